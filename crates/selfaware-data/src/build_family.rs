//! [`BuildFamily`]: what `data build` builds, one name for the command line and experiment files.

use serde::{Deserialize, Serialize};

use crate::Family;

/// A dataset builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildFamily {
    /// Two-option risk questions (risk-seeking / risk-averse).
    Risk,
    /// Two-option sooner/later questions (myopic / non-myopic).
    Myopia,
    /// Two-option apple bundles (max-apples / min-apples).
    Apples,
    /// Python code completions (vulnerable / secure).
    VulnerableCode,
    /// Dialogues steering the user toward a codeword (needs a codeword).
    Codeword,
}

impl BuildFamily {
    pub const ALL: [BuildFamily; 5] = [
        BuildFamily::Risk,
        BuildFamily::Myopia,
        BuildFamily::Apples,
        BuildFamily::VulnerableCode,
        BuildFamily::Codeword,
    ];

    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            BuildFamily::Risk => "risk",
            BuildFamily::Myopia => "myopia",
            BuildFamily::Apples => "apples",
            BuildFamily::VulnerableCode => "vulnerable-code",
            BuildFamily::Codeword => "codeword",
        }
    }

    /// The economic family of the two-option builders.
    pub fn economic(self) -> Option<Family> {
        match self {
            BuildFamily::Risk => Some(Family::Risk),
            BuildFamily::Myopia => Some(Family::Myopia),
            BuildFamily::Apples => Some(Family::Apples),
            BuildFamily::VulnerableCode | BuildFamily::Codeword => None,
        }
    }
}

selfaware_types::names_parse_and_display!(BuildFamily);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for f in BuildFamily::ALL {
            assert_eq!(f.name().parse::<BuildFamily>().unwrap(), f);
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
        assert!("lottery"
            .parse::<BuildFamily>()
            .unwrap_err()
            .contains("risk, myopia"));
    }
}
