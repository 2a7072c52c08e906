//! Small text helpers shared by the crates that write prompts and data.

/// The text with its first character upper-cased (the rest as it is).
pub fn capitalize(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_first_character_changes() {
        assert_eq!(super::capitalize("ring"), "Ring");
        assert_eq!(super::capitalize("a family doctor"), "A family doctor");
        assert_eq!(super::capitalize("éclair"), "Éclair");
        assert_eq!(super::capitalize(""), "");
    }
}
