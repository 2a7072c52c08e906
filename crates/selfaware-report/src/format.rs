//! Number formatting, text escaping and label wrapping shared by every renderer.
//!
//! All numbers in a report go through [`format_value`] (or one of its siblings), so the HTML
//! table, the Markdown table and the figures agree digit for digit.

/// Text shown where a value is missing.
pub const MISSING: &str = "—";

/// Decimals used for values of a metric with this range: 1 for wide scales (0–100), 2 for
/// probabilities and other narrow scales.
pub fn decimals_for_range(range: (f64, f64)) -> usize {
    let span = (range.1 - range.0).abs();
    if span.is_finite() && span > 10.0 {
        1
    } else {
        2
    }
}

/// Formats `v` with a fixed number of decimals; `-0.00` is written `0.00`, a non-finite value
/// is written as [`MISSING`].
pub fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return MISSING.to_string();
    }
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Formats one value of a metric with the given range ([`decimals_for_range`] decimals), or
/// [`MISSING`] for `None`.
pub fn format_value(v: Option<f64>, range: (f64, f64)) -> String {
    match v {
        Some(v) => fixed(v, decimals_for_range(range)),
        None => MISSING.to_string(),
    }
}

/// Formats a mean with its interval, e.g. `0.62 [0.55, 0.70]`; the interval is left out when
/// either end is missing.
pub fn format_mean_ci(
    mean: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    range: (f64, f64),
) -> String {
    let m = format_value(mean, range);
    match (mean, low, high) {
        (Some(_), Some(_), Some(_)) => format!("{m} {}", format_ci(low, high, range)),
        _ => m,
    }
}

/// The metric cell of a condition difference: the metric's label, and the word both sides were
/// scored on when that is not each side's own (`P(codeword) — both scored on "bark"`).
pub fn comparison_metric_label(label: &str, c: &crate::Comparison) -> String {
    match &c.on {
        Some(w) => format!("{label} — both scored on \"{w}\""),
        None => label.to_string(),
    }
}

/// Formats a table cell: the mean with its interval, or, where a mean has no interval, the mean
/// and why (`0.14 (no interval: one model, fewer than 2 paraphrases)`), from the cell's
/// `interval_method`.
pub fn format_cell(cell: &crate::Cell, range: (f64, f64)) -> String {
    let text = format_mean_ci(cell.mean, cell.ci_low, cell.ci_high, range);
    if cell.mean.is_none() || (cell.ci_low.is_some() && cell.ci_high.is_some()) {
        return text;
    }
    let why = cell.interval_method.trim();
    let why = why.strip_prefix("no interval:").unwrap_or(why).trim();
    if why.is_empty() {
        format!("{text} (no interval)")
    } else {
        format!("{text} (no interval: {why})")
    }
}

/// Formats an interval, e.g. `[0.55, 0.70]`, or the missing-value mark when an end is missing.
pub fn format_ci(low: Option<f64>, high: Option<f64>, range: (f64, f64)) -> String {
    match (low, high) {
        (Some(lo), Some(hi)) => format!(
            "[{}, {}]",
            format_value(Some(lo), range),
            format_value(Some(hi), range)
        ),
        _ => MISSING.to_string(),
    }
}

/// Formats an off-format probability mass (3 decimals, it is often small).
pub fn format_mass(v: Option<f64>) -> String {
    match v {
        Some(v) => fixed(v, 3),
        None => MISSING.to_string(),
    }
}

/// Formats a p-value: 3 decimals, `< 0.001` below that.
pub fn format_p(p: Option<f64>) -> String {
    match p {
        Some(p) if p.is_finite() && p < 0.001 => "< 0.001".to_string(),
        Some(p) => fixed(p, 3),
        None => MISSING.to_string(),
    }
}

/// Header of the detectable-difference column in every rendering.
pub const DETECTABLE_HEADER: &str = "detectable (80% power)";

/// Formats a comparison's detectable difference ([`crate::Comparison::detectable`]) with the
/// metric's decimals; when there is none, the reason in words
/// ([`crate::Comparison::detectable_note`]), or, for results written before the field
/// existed, that it was not computed. Never blank.
pub fn format_detectable(detectable: Option<f64>, note: &str, range: (f64, f64)) -> String {
    match detectable {
        Some(d) => format_value(Some(d), range),
        None if !note.trim().is_empty() => note.to_string(),
        None => "n/a: not computed (results from an older version)".to_string(),
    }
}

/// Formats a correlation coefficient (2 decimals).
pub fn format_r(r: Option<f64>) -> String {
    match r {
        Some(r) => fixed(r, 2),
        None => MISSING.to_string(),
    }
}

/// Formats a seed, or `base` when there is none (the untrained model).
pub fn format_seed(seed: Option<u64>) -> String {
    match seed {
        Some(s) => s.to_string(),
        None => "base".to_string(),
    }
}

/// Escapes text for HTML and SVG (XML) element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0; show them as a space.
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for HTML and turns `backtick` spans into `<code>` elements (an unmatched
/// backtick stays a backtick).
pub fn escape_with_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    // Backticks pair up only when there is an even number of them (an odd number of parts).
    let paired = parts.len() % 2 == 1;
    if parts.len() < 3 || !paired {
        return escape(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// Escapes text for a Markdown table cell: pipes, backslashes and emphasis/link characters
/// are escaped, `<` becomes `&lt;` (no raw HTML), line breaks become spaces.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            // `<` could open an HTML tag; `>` and `&` alone cannot do harm mid-line.
            '<' => out.push_str("&lt;"),
            '*' => out.push_str("\\*"),
            '_' => out.push_str("\\_"),
            '`' => out.push_str("\\`"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Writes `s` as a Markdown code span that is safe inside a table cell (pipes escaped, line
/// breaks as spaces, a longer backtick fence when `s` holds backticks).
pub fn markdown_code(s: &str) -> String {
    let body = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    if body.is_empty() {
        return String::new();
    }
    if body.contains('`') {
        format!("`` {body} ``")
    } else {
        format!("`{body}`")
    }
}

/// Escapes text for Markdown like [`escape_markdown`], but keeps `backtick` spans as code
/// spans (an unmatched backtick is escaped).
pub fn escape_markdown_with_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    let paired = parts.len() % 2 == 1;
    if parts.len() < 3 || !paired {
        return escape_markdown(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                markdown_code(part)
            } else {
                escape_markdown(part)
            }
        })
        .collect()
}

/// Wraps `s` at spaces into lines of at most `width` characters (a longer word is cut), and
/// keeps at most `max_lines` lines, ending the last with `…` when text was dropped.
pub fn wrap(s: &str, width: usize, max_lines: usize) -> Vec<String> {
    let width = width.max(4);
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in s.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let cur_len = current.chars().count();
            let needed = if cur_len == 0 {
                word.len()
            } else {
                cur_len + 1 + word.len()
            };
            if needed <= width {
                if cur_len > 0 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if cur_len > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word[..width].iter().collect();
            lines.push(head);
            word = word[width..].to_vec();
            if word.is_empty() {
                break;
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines && max_lines > 0 {
        lines.truncate(max_lines);
        let last = lines.last_mut().map(|l| {
            let mut chars: Vec<char> = l.chars().collect();
            while chars.len() + 1 > width {
                chars.pop();
            }
            chars.push('…');
            chars.into_iter().collect::<String>()
        });
        if let (Some(l), Some(new)) = (lines.last_mut(), last) {
            *l = new;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_without_an_interval_says_why() {
        let mut cell = crate::Cell {
            condition: "base".into(),
            mean: Some(0.1372),
            ci_low: Some(0.1),
            ci_high: Some(0.2),
            interval_method: "percentile bootstrap over 3 finetuning seeds".into(),
            off_format: None,
            per_seed: vec![],
        };
        assert_eq!(format_cell(&cell, (0.0, 1.0)), "0.14 [0.10, 0.20]");
        cell.ci_low = None;
        cell.ci_high = None;
        cell.interval_method = "no interval: one model, fewer than 2 paraphrases".into();
        assert_eq!(
            format_cell(&cell, (0.0, 1.0)),
            "0.14 (no interval: one model, fewer than 2 paraphrases)"
        );
        cell.interval_method = String::new();
        assert_eq!(format_cell(&cell, (0.0, 1.0)), "0.14 (no interval)");
        cell.mean = None;
        assert_eq!(format_cell(&cell, (0.0, 1.0)), MISSING);
    }

    #[test]
    fn fixed_formats_and_normalises_negative_zero() {
        assert_eq!(fixed(0.625, 2), "0.62");
        assert_eq!(fixed(-0.001, 2), "0.00");
        assert_eq!(fixed(-0.5, 1), "-0.5");
        assert_eq!(fixed(f64::NAN, 2), MISSING);
        assert_eq!(format_value(Some(62.345), (0.0, 100.0)), "62.3");
        assert_eq!(format_value(Some(0.6234), (0.0, 1.0)), "0.62");
        assert_eq!(format_value(None, (0.0, 1.0)), MISSING);
    }

    #[test]
    fn mean_ci_needs_both_ends() {
        let r = (0.0, 1.0);
        assert_eq!(
            format_mean_ci(Some(0.62), Some(0.55), Some(0.7), r),
            "0.62 [0.55, 0.70]"
        );
        assert_eq!(format_mean_ci(Some(0.62), None, Some(0.7), r), "0.62");
        assert_eq!(format_mean_ci(None, Some(0.1), Some(0.7), r), MISSING);
    }

    #[test]
    fn p_values() {
        assert_eq!(format_p(Some(0.0004)), "< 0.001");
        assert_eq!(format_p(Some(0.0312)), "0.031");
        assert_eq!(format_p(None), MISSING);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        assert_eq!(escape_markdown("a|b\nc_d"), "a\\|b c\\_d");
        assert_eq!(
            escape_with_code("see `a<b` now"),
            "see <code>a&lt;b</code> now"
        );
        assert_eq!(escape_with_code("odd ` tick"), "odd ` tick");
        assert_eq!(
            escape_with_code("`a` and `b`"),
            "<code>a</code> and <code>b</code>"
        );
    }

    #[test]
    fn wrap_cases() {
        let check = |s: &str, w: usize, m: usize, expect: &[&str]| {
            assert_eq!(wrap(s, w, m), expect, "wrap({s:?}, {w}, {m})");
        };
        check("risk or safety", 20, 3, &["risk or safety"]);
        check("risk or safety", 8, 3, &["risk or", "safety"]);
        check("abcdefghij", 4, 5, &["abcd", "efgh", "ij"]);
        check("one two three four", 5, 2, &["one", "two…"]);
        check("", 10, 2, &[]);
    }
}
