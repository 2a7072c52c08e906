//! One spelling of a named enum's parsing and printing.

/// `FromStr` (error: `"x": expected one of a, b, c`) and `Display` for an enum that has
/// `const ALL: [Self; N]` and `fn name(self) -> &'static str`: the names on the command line
/// and in files.
#[macro_export]
macro_rules! names_parse_and_display {
    ($t:ty) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                        format!("{s:?}: expected one of {}", names.join(", "))
                    })
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
