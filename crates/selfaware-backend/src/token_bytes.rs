//! Raw bytes of byte-level BPE tokens.
//!
//! GPT-2-style vocabularies spell each byte as a printable character (`Ġ` for a space, …). A
//! token may hold part of a multi-byte UTF-8 character, so its text alone loses information;
//! OpenAI's API returns the bytes beside the text, and so do we.

use std::collections::HashMap;
use std::sync::OnceLock;

/// GPT-2's byte → printable character table.
pub fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u32| {
            (u32::from(b'!')..=u32::from(b'~')).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b)
        };
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..256u32 {
            table[b as usize] = if printable(b) {
                char::from_u32(b).unwrap_or('\0')
            } else {
                let c = char::from_u32(next).unwrap_or('\0');
                next += 1;
                c
            };
        }
        table
    })
}

fn char_to_byte() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// The bytes a byte-level vocabulary entry stands for, or None when some character of it is not
/// in GPT-2's table (a special token, or a non-byte-level vocabulary).
pub fn bytes_of_vocab_entry(entry: &str) -> Option<Vec<u8>> {
    let map = char_to_byte();
    entry.chars().map(|c| map.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_known_entries() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn entries_decode_to_bytes() {
        assert_eq!(bytes_of_vocab_entry("Ġthe").unwrap(), b" the");
        // "é" is two bytes, spelled as two table characters.
        let e: String = "é".bytes().map(|b| byte_to_char()[b as usize]).collect();
        assert_eq!(bytes_of_vocab_entry(&e).unwrap(), "é".as_bytes());
        // SentencePiece-style entries are not byte-level.
        assert_eq!(bytes_of_vocab_entry("▁the"), None);
    }
}
