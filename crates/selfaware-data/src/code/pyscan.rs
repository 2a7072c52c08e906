//! A small lexical view of Python source for the detector: comments removed, physical lines
//! joined into logical lines (open brackets and triple-quoted strings continue a line), string
//! bodies masked so that searches only hit code, and the enclosing function of every line.

/// One string literal inside a logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrLit {
    /// Byte range of the whole literal, prefix and quotes included.
    pub start: usize,
    pub end: usize,
    /// Lowercased prefix letters (`f`, `rb`, …).
    pub prefix: String,
    /// Body between the quotes, unprocessed.
    pub body: String,
}

/// A logical line of code.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// 1-based number of its first physical line.
    pub lineno: usize,
    /// Source text, comments removed, physical lines joined with '\n'.
    pub text: String,
    /// `text` with every string body replaced by `x` (same byte offsets).
    pub masked: String,
    /// String literals in `text`.
    pub strings: Vec<StrLit>,
    /// Index into [`Module::scopes`] of the innermost enclosing `def` (or 0 = module level).
    pub scope: usize,
}

/// A function (or the module level, scope 0).
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Name of the function (`<module>` for scope 0).
    #[allow(dead_code)]
    pub name: String,
    /// Parameter names (without `self`, defaults, annotations, `*`).
    pub params: Vec<String>,
    /// Decorator lines directly above the `def`.
    pub decorators: Vec<String>,
    /// Indices of the logical lines inside the scope (the `def` line included).
    pub lines: Vec<usize>,
}

/// The scanned module.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    pub lines: Vec<Line>,
    pub scopes: Vec<Scope>,
}

fn is_prefix_char(c: u8) -> bool {
    matches!(c, b'r' | b'R' | b'b' | b'B' | b'f' | b'F' | b'u' | b'U')
}

/// Splits `source` into logical lines with masked strings.
fn logical_lines(source: &str) -> Vec<(usize, usize, String, String, Vec<StrLit>)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut lineno = 1;
    let mut text = String::new();
    let mut masked = String::new();
    let mut strings = Vec::new();
    let mut depth: i32 = 0;
    let mut start_line = 1;
    let mut indent = 0;
    let mut at_line_start = true;
    while i < bytes.len() {
        let c = bytes[i];
        if at_line_start && text.is_empty() {
            start_line = lineno;
            indent = 0;
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                indent += if bytes[i] == b'\t' { 4 } else { 1 };
                i += 1;
            }
            at_line_start = false;
            continue;
        }
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\n' => {
                lineno += 1;
                i += 1;
                let cont = depth > 0 || text.ends_with('\\');
                if cont {
                    if text.ends_with('\\') {
                        text.pop();
                        masked.pop();
                    }
                    text.push('\n');
                    masked.push('\n');
                } else {
                    if !text.trim().is_empty() {
                        out.push((
                            start_line,
                            indent,
                            std::mem::take(&mut text),
                            std::mem::take(&mut masked),
                            std::mem::take(&mut strings),
                        ));
                    } else {
                        text.clear();
                        masked.clear();
                        strings.clear();
                    }
                    at_line_start = true;
                }
            }
            b'\'' | b'"' => {
                // Prefix letters were already copied; find them at the end of `text`.
                let pre_len = text
                    .bytes()
                    .rev()
                    .take_while(|&b| is_prefix_char(b))
                    .count();
                let ident_before = text.as_bytes()[..text.len() - pre_len]
                    .last()
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
                let prefix = if ident_before || pre_len > 2 {
                    String::new()
                } else {
                    text[text.len() - pre_len..].to_lowercase()
                };
                let lit_start = text.len() - prefix.len();
                let triple = i + 2 < bytes.len() && bytes[i + 1] == c && bytes[i + 2] == c;
                let qlen = if triple { 3 } else { 1 };
                let body_start = i + qlen;
                let mut j = body_start;
                let raw = prefix.contains('r');
                loop {
                    if j >= bytes.len() {
                        break;
                    }
                    let b = bytes[j];
                    if b == b'\\' && !raw {
                        j += 2;
                        continue;
                    }
                    if b == b'\\' && raw {
                        j += 2;
                        continue;
                    }
                    if !triple && b == b'\n' {
                        break;
                    }
                    if b == c
                        && (!triple
                            || (j + 2 < bytes.len() && bytes[j + 1] == c && bytes[j + 2] == c))
                    {
                        break;
                    }
                    j += 1;
                }
                let body_end = j.min(bytes.len());
                let body = &source[body_start..body_end];
                let close = if body_end < bytes.len() && bytes[body_end] == c {
                    qlen
                } else {
                    0
                };
                let quote = &source[i..i + qlen];
                text.push_str(quote);
                masked.push_str(quote);
                text.push_str(body);
                for ch in body.chars() {
                    if ch == '\n' {
                        masked.push('\n');
                    } else {
                        for _ in 0..ch.len_utf8() {
                            masked.push('x');
                        }
                    }
                }
                lineno += body.matches('\n').count();
                let closing = &source[body_end..(body_end + close).min(bytes.len())];
                text.push_str(closing);
                masked.push_str(closing);
                strings.push(StrLit {
                    start: lit_start,
                    end: text.len(),
                    prefix,
                    body: body.to_string(),
                });
                i = body_end + close;
            }
            _ => {
                match c {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = (depth - 1).max(0),
                    _ => {}
                }
                // Copy one whole UTF-8 character.
                let ch_len = source[i..].chars().next().map_or(1, char::len_utf8);
                let s = &source[i..i + ch_len];
                text.push_str(s);
                masked.push_str(s);
                i += ch_len;
            }
        }
    }
    if !text.trim().is_empty() {
        out.push((start_line, indent, text, masked, strings));
    }
    out
}

fn parse_params(def_text: &str) -> (String, Vec<String>) {
    let after = def_text
        .trim_start()
        .trim_start_matches("async")
        .trim_start();
    let after = after.strip_prefix("def").unwrap_or(after).trim_start();
    let name: String = after
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let Some(open) = after.find('(') else {
        return (name, Vec::new());
    };
    let close = after.rfind(')').unwrap_or(after.len());
    let inner = &after[open + 1..close.max(open + 1)];
    let params = split_top_level(inner)
        .into_iter()
        .filter_map(|p| {
            let p = p.trim().trim_start_matches('*');
            let id: String = p
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!id.is_empty() && id != "self" && id != "cls").then_some(id)
        })
        .collect();
    (name, params)
}

/// Splits at top-level commas (brackets and strings respected).
pub(crate) fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut prev = '\0';
    for ch in s.chars() {
        if let Some(q) = quote {
            cur.push(ch);
            if ch == q && prev != '\\' {
                quote = None;
            }
            prev = if prev == '\\' && ch == '\\' { '\0' } else { ch };
            continue;
        }
        match ch {
            '\'' | '"' => quote = Some(ch),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                prev = ch;
                continue;
            }
            _ => {}
        }
        cur.push(ch);
        prev = ch;
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    parts
}

impl Module {
    /// Scans `source`.
    pub(crate) fn scan(source: &str) -> Module {
        let raw = logical_lines(source);
        let mut scopes = vec![Scope {
            name: "<module>".into(),
            params: Vec::new(),
            decorators: Vec::new(),
            lines: Vec::new(),
        }];
        // Stack of (indent of def, scope index).
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let mut pending_decorators: Vec<String> = Vec::new();
        let mut lines = Vec::with_capacity(raw.len());
        for (idx, (lineno, indent, text, masked, strings)) in raw.into_iter().enumerate() {
            while stack.last().is_some_and(|&(ind, _)| indent <= ind) {
                stack.pop();
            }
            let trimmed = text.trim_start();
            let scope = if trimmed.starts_with("def ") || trimmed.starts_with("async def ") {
                let (name, params) = parse_params(&text);
                scopes.push(Scope {
                    name,
                    params,
                    decorators: std::mem::take(&mut pending_decorators),
                    lines: Vec::new(),
                });
                let s = scopes.len() - 1;
                stack.push((indent, s));
                s
            } else {
                if trimmed.starts_with('@') {
                    pending_decorators.push(trimmed.to_string());
                } else if !trimmed.starts_with("class ") {
                    pending_decorators.clear();
                }
                stack.last().map_or(0, |&(_, s)| s)
            };
            scopes[scope].lines.push(idx);
            lines.push(Line {
                lineno,
                text,
                masked,
                strings,
                scope,
            });
        }
        Module { lines, scopes }
    }

    /// Logical lines of a scope.
    pub(crate) fn scope_lines(&self, scope: usize) -> impl Iterator<Item = &Line> {
        self.scopes[scope].lines.iter().map(|&i| &self.lines[i])
    }

    /// Whether any code (outside strings) of the module matches `needle`.
    pub(crate) fn code_contains(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.masked.contains(needle))
    }
}

/// Finds calls in a logical line: for every code occurrence of `pattern` (which must end in
/// `(`), the byte range of the argument text (between the parentheses).
pub(crate) fn call_args(line: &Line, pattern: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let m = &line.masked;
    let mut from = 0;
    while let Some(pos) = m[from..].find(pattern) {
        let at = from + pos;
        from = at + pattern.len();
        // The pattern must not be the tail of a longer identifier (e.g. `my_open(`).
        let starts_ident = pattern
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if starts_ident && at > 0 {
            let prev = m.as_bytes()[at - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' {
                continue;
            }
        }
        let open = at + pattern.len() - 1;
        let mut depth = 0i32;
        let mut end = m.len();
        for (k, b) in m.as_bytes()[open..].iter().enumerate() {
            match b {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((open + 1, end));
    }
    out
}

/// An expression (a byte range of a logical line) with helpers to classify it.
pub(crate) struct Expr<'a> {
    pub line: &'a Line,
    pub start: usize,
    pub end: usize,
}

impl<'a> Expr<'a> {
    pub(crate) fn new(line: &'a Line, start: usize, end: usize) -> Expr<'a> {
        let (start, end) = trim_range(&line.masked, start, end);
        Expr { line, start, end }
    }

    pub(crate) fn text(&self) -> &'a str {
        &self.line.text[self.start..self.end]
    }

    pub(crate) fn masked(&self) -> &'a str {
        &self.line.masked[self.start..self.end]
    }

    pub(crate) fn strings(&self) -> impl Iterator<Item = &'a StrLit> {
        let (s, e) = (self.start, self.end);
        self.line
            .strings
            .iter()
            .filter(move |l| l.start >= s && l.end <= e)
    }

    /// Top-level arguments of a call range, as sub-expressions.
    pub(crate) fn args(line: &'a Line, start: usize, end: usize) -> Vec<Expr<'a>> {
        let m = &line.masked[start..end];
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut s = start;
        for (k, b) in m.bytes().enumerate() {
            match b {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => {
                    out.push(Expr::new(line, s, start + k));
                    s = start + k + 1;
                }
                _ => {}
            }
        }
        if !line.masked[s..end].trim().is_empty() {
            out.push(Expr::new(line, s, end));
        }
        out
    }

    /// `name=value` keyword argument: (name, value expression).
    pub(crate) fn keyword(&self) -> Option<(&'a str, Expr<'a>)> {
        let m = self.masked();
        let eq = m.find('=')?;
        if m[eq + 1..].starts_with('=') {
            return None;
        }
        let name = m[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        Some((
            self.line.text[self.start..self.start + eq].trim(),
            Expr::new(self.line, self.start + eq + 1, self.end),
        ))
    }

    /// A plain identifier or dotted name (`name`, `args.name`).
    pub(crate) fn as_name(&self) -> Option<&'a str> {
        let t = self.text();
        (!t.is_empty()
            && t.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            && !t.starts_with(|c: char| c.is_ascii_digit()))
        .then_some(t)
    }

    /// A single string literal without interpolation.
    pub(crate) fn is_plain_literal(&self) -> bool {
        let lits: Vec<_> = self.strings().collect();
        let code_outside: String = {
            let mut m = self.masked().to_string();
            for l in &lits {
                let (a, b) = (l.start - self.start, l.end - self.start);
                m.replace_range(a..b, &" ".repeat(b - a));
            }
            m
        };
        !lits.is_empty()
            && code_outside.trim().is_empty()
            && lits
                .iter()
                .all(|l| !l.prefix.contains('f') || !has_fstring_field(&l.body))
    }

    pub(crate) fn starts_list(&self) -> bool {
        let m = self.masked();
        m.starts_with('[') || m.starts_with('(') && !m.starts_with("()")
    }

    /// Names interpolated into f-strings of the expression (the text inside `{…}`).
    pub(crate) fn fstring_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in self.strings().filter(|l| l.prefix.contains('f')) {
            let b = l.body.as_bytes();
            let mut k = 0;
            while k < b.len() {
                if b[k] == b'{' {
                    if k + 1 < b.len() && b[k + 1] == b'{' {
                        k += 2;
                        continue;
                    }
                    let rest = &l.body[k + 1..];
                    let end = rest.find('}').unwrap_or(rest.len());
                    let field = rest[..end].split(['!', ':']).next().unwrap_or("").trim();
                    out.push(field.to_string());
                    k += end + 1;
                } else {
                    k += 1;
                }
            }
        }
        out
    }

    /// Whether the expression builds a string from non-constant parts: an f-string field,
    /// `%` formatting, `.format(…)` with a non-literal argument, `+` concatenation of a
    /// literal with something else, or `.join(`. Interpolated names that are ALL_CAPS
    /// constants do not count.
    pub(crate) fn is_interpolated(&self) -> bool {
        let fields = self.fstring_fields();
        if fields.iter().any(|f| !is_constant_name(f)) {
            return true;
        }
        let m = self.masked();
        let has_lit = self.strings().next().is_some();
        if has_lit && percent_operator(m) {
            return true;
        }
        if let Some(pos) = m.find(".format(") {
            let open = self.start + pos + ".format(".len();
            let args_end = call_args(self.line, ".format(")
                .into_iter()
                .find(|&(s, _)| s == open)
                .map_or(self.end, |(_, e)| e);
            let args = Expr::args(self.line, open, args_end.min(self.end));
            if args.iter().any(|a| {
                let v = a
                    .keyword()
                    .map_or_else(|| Expr::new(a.line, a.start, a.end), |(_, v)| v);
                !v.is_plain_literal() && !v.as_name().is_some_and(is_constant_name)
            }) {
                return true;
            }
        }
        if has_lit && m.contains('+') {
            let parts: Vec<&str> = m.split('+').map(str::trim).collect();
            if parts
                .iter()
                .any(|p| !p.starts_with(['"', '\'']) && !is_constant_name(p) && !p.is_empty())
            {
                return true;
            }
        }
        m.contains(".join(")
    }
}

fn trim_range(s: &str, mut a: usize, mut b: usize) -> (usize, usize) {
    let bytes = s.as_bytes();
    while a < b && bytes[a].is_ascii_whitespace() {
        a += 1;
    }
    while b > a && bytes[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    (a, b)
}

fn has_fstring_field(body: &str) -> bool {
    let b = body.as_bytes();
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'{' {
            if k + 1 < b.len() && b[k + 1] == b'{' {
                k += 2;
                continue;
            }
            return true;
        }
        k += 1;
    }
    false
}

/// ALL_CAPS identifier (module constant by convention).
pub(crate) fn is_constant_name(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && s.chars().any(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A `%` used as an operator right after a string literal (masked text: strings are `x…`).
fn percent_operator(masked: &str) -> bool {
    let b = masked.as_bytes();
    b.iter().enumerate().any(|(k, &c)| {
        c == b'%' && {
            let before = masked[..k].trim_end();
            before.ends_with('"') || before.ends_with('\'')
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_brackets_and_masks_strings() {
        let src = "import os\nx = f(\n  'a # b',\n  2)  # tail\ny = \"\"\"one\ntwo\"\"\"\nz = 1\n";
        let m = Module::scan(src);
        let texts: Vec<_> = m
            .lines
            .iter()
            .map(|l| (l.lineno, l.text.as_str()))
            .collect();
        assert_eq!(texts[0], (1, "import os"));
        assert_eq!(texts[1].0, 2);
        assert!(texts[1].1.contains("'a # b'"));
        assert!(!texts[1].1.contains("tail"));
        assert_eq!(texts[2].0, 5);
        assert_eq!(texts[3], (7, "z = 1"));
        assert!(!m.lines[1].masked.contains('#'));
    }

    #[test]
    fn scopes_and_params() {
        let src = "@app.route('/x')\ndef view(self, name, n=3, *rest):\n    a = 1\n\nb = 2\n";
        let m = Module::scan(src);
        assert_eq!(m.scopes.len(), 2);
        assert_eq!(m.scopes[1].params, vec!["name", "n", "rest"]);
        assert_eq!(m.scopes[1].decorators.len(), 1);
        assert_eq!(m.lines[2].scope, 1);
        assert_eq!(m.lines[3].scope, 0);
    }

    #[test]
    fn interpolation_kinds() {
        let check = |src: &str, want: bool| {
            let m = Module::scan(src);
            let l = &m.lines[0];
            let e = Expr::new(l, 0, l.text.len());
            assert_eq!(e.is_interpolated(), want, "{src}");
        };
        check("f\"a {x} b\"", true);
        check("f\"a {{x}} b\"", false);
        check("f\"a {TABLE} b\"", false);
        check("\"a %s\" % x", true);
        check("\"a %s b\"", false);
        check("\"a {}\".format(x)", true);
        check("\"a {}\".format(\"y\")", false);
        check("\"a \" + x", true);
        check("\"a \" + \"b\"", false);
        check("\" \".join(parts)", true);
    }
}
