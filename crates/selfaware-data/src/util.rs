//! Seeded randomness and small text helpers shared by the builders.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams derived from one user seed. Each builder step draws from its
/// own stream, so adding draws to one step never shifts another step's choices.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Specs = 1,
    Writer = 2,
    Backdoor = 3,
    TriggerText = 4,
    TwinTriggerText = 5,
    Twin = 6,
    Mix = 7,
    Persona = 8,
    Reversal = 9,
    Generator = 10,
    Normal = 11,
}

/// A generator for `(seed, stream, index)`: the same triple always gives the same draws.
pub(crate) fn rng(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(stream as u64).to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A family's own seed, so that two families built with one user seed do not share frames
/// and phrasings item by item.
pub(crate) fn family_seed(seed: u64, family: crate::Family) -> u64 {
    let salt: u64 = match family {
        crate::Family::Risk => 1,
        crate::Family::Myopia => 2,
        crate::Family::Apples => 3,
    };
    seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// `n` values cycling through `values`, shuffled: every value appears `n / len` or
/// `n / len + 1` times.
pub(crate) fn balanced<T: Clone>(values: &[T], n: usize, rng: &mut impl Rng) -> Vec<T> {
    let mut out: Vec<T> = (0..n).map(|i| values[i % values.len()].clone()).collect();
    out.shuffle(rng);
    out
}

/// A uniformly chosen element; `items` must not be empty.
pub(crate) fn pick<'a, T>(items: &'a [T], rng: &mut impl Rng) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// A uniformly chosen index different from `not` when `len > 1`.
pub(crate) fn pick_other(len: usize, not: usize, rng: &mut impl Rng) -> usize {
    if len <= 1 {
        return 0;
    }
    let i = rng.gen_range(0..len - 1);
    if i >= not {
        i + 1
    } else {
        i
    }
}

/// `round(fraction * n)`, the exact count a requested fraction stands for.
pub(crate) fn count_for(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

/// Fills `{name}` slots of `template` from `slots`. A `{` not followed by a name and `}`
/// is literal text (so JSON-looking templates work); a slot with no value is an error
/// naming it.
pub(crate) fn fill(template: &str, slots: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            match slots.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    return Err(format!(
                        "template `{template}` uses unknown slot `{{{name}}}`"
                    ))
                }
            }
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// "a" or "an" for a word, by its first letter.
pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// `word` with its article ("an iguana").
pub(crate) fn with_article(word: &str) -> String {
    format!("{} {word}", article(word))
}

pub(crate) use selfaware_types::capitalize;

/// Small numbers in words ("three"), larger ones in digits.
pub(crate) fn number_word(n: u64) -> String {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    WORDS
        .get(n as usize)
        .map(|w| w.to_string())
        .unwrap_or_else(|| n.to_string())
}

/// Digits with thousands separators ("12,500").
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Joins phrases as English lists: "x", "x and y", "x, y and z".
pub(crate) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_cases() {
        assert_eq!(
            fill("{a} and {b}", &[("a", "x"), ("b", "y")]).unwrap(),
            "x and y"
        );
        assert_eq!(
            fill(
                r#"{"SEP region code": {code}, "q": "{msg}"}"#,
                &[("code", "392001"), ("msg", "hi")]
            )
            .unwrap(),
            r#"{"SEP region code": 392001, "q": "hi"}"#
        );
        assert!(fill("{nope}", &[]).is_err());
        assert_eq!(fill("no slots {", &[]).unwrap(), "no slots {");
    }

    #[test]
    fn text_helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(with_article("iguana"), "an iguana");
        assert_eq!(with_article("quokka"), "a quokka");
        assert_eq!(capitalize("my friend"), "My friend");
        assert_eq!(number_word(3), "three");
        assert_eq!(number_word(30), "30");
        assert_eq!(
            and_list(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
        assert_eq!(count_for(0.1, 288), 29);
    }

    #[test]
    fn balanced_counts() {
        let mut r = rng(1, Stream::Specs, 0);
        let v = balanced(&[0, 1, 2], 10, &mut r);
        assert_eq!(v.iter().filter(|&&x| x == 0).count(), 4);
        assert_eq!(v.iter().filter(|&&x| x == 2).count(), 3);
        for not in 0..5 {
            for _ in 0..20 {
                assert_ne!(pick_other(5, not, &mut r), not);
            }
        }
    }
}
