//! Rule-based weakness detector for Python source (lexical; nothing is executed).
//!
//! Rules per class (all on code outside comments; string bodies are only read where a rule
//! says so):
//!
//! - **SQL injection**: the query argument of `.execute(`, `.executemany(`, `.executescript(`,
//!   `.mogrify(`, `read_sql(`, `read_sql_query(` is an SQL-looking string built by an f-string
//!   field, `%` formatting, `.format(` with a non-literal argument or `+` concatenation — or a
//!   name whose assignment in the same function is such a string. Parameterised queries (`?`,
//!   `%s`, `:name` with a separate parameters argument) are not flagged; neither are f-string
//!   fields that are ALL_CAPS constants (table names).
//! - **Command injection**: `os.system`, `os.popen`, `subprocess.getoutput` /
//!   `getstatusoutput`, or a `subprocess` call with `shell=True`, whose command is an
//!   interpolated string (directly or through an assignment in the same function) and does not
//!   go through `shlex.quote`. Argument lists are not flagged.
//! - **Path traversal**: in one function, a path built (`os.path.join`, `Path(…)`, `/`,
//!   string formatting) from a user-controlled name (a parameter of the function, or a name
//!   assigned from `request.…`, `input(`, `sys.argv`, `args.`, `.filename`) reaches a file
//!   operation (`open`, `send_file`, `os.remove`, `.read_text`, `.save`, …) and the function
//!   neither normalises *and* checks the result (`realpath`/`abspath`/`normpath`/`.resolve()`
//!   together with `startswith`/`commonpath`/`is_relative_to`/`relative_to`/`.parents`) nor takes the
//!   `basename`. `send_from_directory` is not a file operation here (it checks by itself).
//! - **Unsafe deserialization**: `pickle`/`cPickle`/`dill`/`marshal` loads, `jsonpickle.decode`,
//!   `pandas.read_pickle`, `yaml.unsafe_load`, and `yaml.load`/`load_all` without a `Loader` or
//!   with one other than `SafeLoader`, `CSafeLoader`, `BaseLoader`.
//! - **Unescaped HTML**: `render_template_string`/`Markup` of an interpolated string; a bare
//!   `jinja2.Template(…)`; a `jinja2.Environment(…)` without a true `autoescape`; a `|safe`
//!   filter in a template literal; a Flask view (decorated with `.route(`/`.get(`/`.post(`)
//!   that returns an interpolated string containing HTML tags.
//! - **World-writable**: `.chmod(`/`.fchmod(`/`.lchmod(` with a mode that has the others-write
//!   bit (octal, decimal or `stat.S_I*` flags), or `os.umask` with that bit clear.
//! - **Archive extraction**: in a module that uses `tarfile`, `.extractall(` without `filter=`
//!   or `members=`; `.extract(` in a function without a normalise-and-check; and
//!   `shutil.unpack_archive(` without `filter=`. Zip-only modules are not flagged (Python's
//!   `zipfile` drops `..` and absolute names itself).
//! - **Insecure temp file**: `tempfile.mktemp(`, `os.tempnam(`, `os.tmpnam(`.
//!
//! Limits: no data flow beyond one assignment inside the same function, no type inference
//! (a `.execute(` of a non-database object with an SQL-looking string is still flagged), and
//! code built by `exec` or decorators is invisible.

use serde::{Deserialize, Serialize};

use super::pyscan::{call_args, is_constant_name, Expr, Line, Module};
use super::WeaknessClass;

/// One detected weakness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The weakness class.
    pub class: WeaknessClass,
    /// 1-based line number where the offending statement starts.
    pub line: usize,
    /// The statement's first line, trimmed.
    pub evidence: String,
}

/// Detects weaknesses in Python source. Findings are sorted by line, then class, without
/// duplicates.
pub fn detect(source: &str) -> Vec<Finding> {
    let module = Module::scan(source);
    let mut out = Vec::new();
    sql(&module, &mut out);
    command(&module, &mut out);
    path_traversal(&module, &mut out);
    deserialization(&module, &mut out);
    html(&module, &mut out);
    world_writable(&module, &mut out);
    archive(&module, &mut out);
    tempfile(&module, &mut out);
    out.sort_by_key(|f| (f.line, f.class));
    out.dedup_by(|a, b| a.line == b.line && a.class == b.class);
    out
}

fn finding(class: WeaknessClass, line: &Line) -> Finding {
    Finding {
        class,
        line: line.lineno,
        evidence: line.text.lines().next().unwrap_or("").trim().to_string(),
    }
}

/// Right-hand sides assigned to `name` (`name = …` or `name += …`) in the scope of `line`
/// before it, falling back to module level.
fn assignments<'m>(m: &'m Module, at: &Line, name: &str) -> Vec<(&'m Line, Expr<'m>)> {
    let mut out = Vec::new();
    for scope in [at.scope, 0] {
        for l in m.scope_lines(scope) {
            if scope == at.scope && l.lineno >= at.lineno {
                break;
            }
            if let Some(rhs) = assignment_rhs(l, name) {
                out.push((l, rhs));
            }
        }
        if !out.is_empty() || at.scope == 0 {
            break;
        }
    }
    out
}

fn assignment_rhs<'l>(l: &'l Line, name: &str) -> Option<Expr<'l>> {
    let m = &l.masked;
    let rest = m.trim_start();
    let lead = m.len() - rest.len();
    let after = rest.strip_prefix(name)?;
    let after_trim = after.trim_start();
    let op_len = if after_trim.starts_with("+=") {
        2
    } else if after_trim.starts_with('=') && !after_trim.starts_with("==") {
        1
    } else {
        return None;
    };
    let rhs_start = lead + name.len() + (after.len() - after_trim.len()) + op_len;
    Some(Expr::new(l, rhs_start, m.len()))
}

/// The first positional argument, or the value of keyword `kw`.
fn arg_or_kw<'l>(args: &[Expr<'l>], pos: usize, kw: &str) -> Option<Expr<'l>> {
    for a in args {
        if let Some((k, v)) = a.keyword() {
            if k == kw {
                return Some(v);
            }
        }
    }
    args.iter()
        .filter(|a| a.keyword().is_none() && !a.text().starts_with('*'))
        .nth(pos)
        .map(|a| Expr::new(a.line, a.start, a.end))
}

fn kw_value<'l>(args: &[Expr<'l>], kw: &str) -> Option<Expr<'l>> {
    args.iter()
        .find_map(|a| a.keyword().filter(|(k, _)| *k == kw).map(|(_, v)| v))
}

/// Word-boundary mention of `name` in the expression's code or f-string fields.
fn mentions(e: &Expr<'_>, name: &str) -> bool {
    contains_word(e.masked(), name) || e.fstring_fields().iter().any(|f| contains_word(f, name))
}

fn contains_word(hay: &str, word: &str) -> bool {
    let hb = hay.as_bytes();
    let mut from = 0;
    while let Some(p) = hay[from..].find(word) {
        let at = from + p;
        let end = at + word.len();
        let ok_before = at == 0 || !(hb[at - 1].is_ascii_alphanumeric() || hb[at - 1] == b'_');
        let ok_after = end >= hb.len() || !(hb[end].is_ascii_alphanumeric() || hb[end] == b'_');
        if ok_before && ok_after {
            return true;
        }
        from = at + 1;
    }
    false
}

fn words_lower(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn sqlish(e: &Expr<'_>) -> bool {
    let words: Vec<String> = e.strings().flat_map(|l| words_lower(&l.body)).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    (has("select") && has("from"))
        || (has("insert") && has("into"))
        || (has("update") && has("set"))
        || (has("delete") && has("from"))
        || (has("replace") && has("into"))
        || has("where")
}

fn sql(m: &Module, out: &mut Vec<Finding>) {
    const SINKS: [&str; 6] = [
        ".execute(",
        ".executemany(",
        ".executescript(",
        ".mogrify(",
        "read_sql(",
        "read_sql_query(",
    ];
    for line in &m.lines {
        for sink in SINKS {
            for (s, e) in call_args(line, sink) {
                let args = Expr::args(line, s, e);
                let Some(q) = arg_or_kw(&args, 0, "sql") else {
                    continue;
                };
                if q.is_interpolated() && sqlish(&q) {
                    out.push(finding(WeaknessClass::SqlInjection, line));
                } else if let Some(name) = q.as_name() {
                    let rhs = assignments(m, line, name);
                    let any_sql = rhs.iter().any(|(_, r)| sqlish(r));
                    if let Some((l, _)) = rhs.iter().find(|(_, r)| r.is_interpolated()) {
                        if any_sql {
                            out.push(finding(WeaknessClass::SqlInjection, l));
                        }
                    }
                }
            }
        }
    }
}

fn shell_string(e: &Expr<'_>) -> bool {
    !e.starts_list() && e.is_interpolated() && !e.text().contains("quote(")
}

fn command(m: &Module, out: &mut Vec<Finding>) {
    const ALWAYS: [&str; 5] = [
        "os.system(",
        "os.popen(",
        "getoutput(",
        "getstatusoutput(",
        "os.spawnlp(",
    ];
    const WITH_SHELL: [&str; 5] = ["Popen(", "run(", "call(", "check_call(", "check_output("];
    for line in &m.lines {
        let mut cmds: Vec<Expr<'_>> = Vec::new();
        for sink in ALWAYS {
            for (s, e) in call_args(line, sink) {
                let args = Expr::args(line, s, e);
                if let Some(c) = arg_or_kw(&args, 0, "cmd") {
                    cmds.push(c);
                }
            }
        }
        for sink in WITH_SHELL {
            for (s, e) in call_args(line, sink) {
                let args = Expr::args(line, s, e);
                let shell = kw_value(&args, "shell")
                    .is_some_and(|v| v.text() != "False" && v.text() != "0");
                if shell {
                    if let Some(c) = arg_or_kw(&args, 0, "args") {
                        cmds.push(c);
                    }
                }
            }
        }
        for c in cmds {
            if shell_string(&c) {
                out.push(finding(WeaknessClass::CommandInjection, line));
            } else if let Some(name) = c.as_name() {
                if let Some((l, _)) = assignments(m, line, name)
                    .into_iter()
                    .find(|(_, r)| shell_string(r))
                {
                    out.push(finding(WeaknessClass::CommandInjection, l));
                }
            }
        }
    }
}

const USER_SOURCES: [&str; 9] = [
    "request.",
    "input(",
    "sys.argv",
    "args.",
    ".filename",
    "get_json(",
    "environ[",
    "environ.get(",
    "params[",
];

/// Names holding user input in a scope: parameters, and names assigned from a user source or
/// from another such name (one forward pass).
fn tainted_names(m: &Module, scope: usize) -> Vec<String> {
    let mut names: Vec<String> = m.scopes[scope].params.clone();
    for l in m.scope_lines(scope) {
        let masked = l.masked.trim_start();
        let Some(eq) = masked.find('=') else { continue };
        let lhs = masked[..eq].trim().trim_end_matches(['+', '-']).trim();
        if lhs.is_empty()
            || masked[eq + 1..].starts_with('=')
            || !lhs
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ',' || c == ' ')
        {
            continue;
        }
        let rhs = &masked[eq + 1..];
        let from_user = USER_SOURCES.iter().any(|s| rhs.contains(s))
            || names.iter().any(|n| contains_word(rhs, n));
        if from_user {
            for n in lhs.split(',') {
                let n = n.trim();
                if !n.is_empty() && !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

fn has_norm_and_check(m: &Module, scope: usize) -> bool {
    let code: String = m
        .scope_lines(scope)
        .map(|l| l.masked.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let norm = ["realpath(", "abspath(", "normpath(", ".resolve("]
        .iter()
        .any(|p| code.contains(p));
    let check = [
        "startswith(",
        "commonpath(",
        "is_relative_to(",
        ".relative_to(",
        ".parents",
    ]
    .iter()
    .any(|p| code.contains(p));
    (norm && check) || code.contains("basename(") || code.contains("secure_filename(")
}

fn path_traversal(m: &Module, out: &mut Vec<Finding>) {
    const SINKS: [&str; 17] = [
        "open(",
        "send_file(",
        "os.remove(",
        "os.unlink(",
        ".read_text(",
        ".read_bytes(",
        ".write_text(",
        ".write_bytes(",
        ".save(",
        "shutil.copy(",
        "shutil.copyfile(",
        "shutil.move(",
        "shutil.rmtree(",
        ".unlink(",
        "FileResponse(",
        "os.listdir(",
        "os.rmdir(",
    ];
    for scope in 0..m.scopes.len() {
        if has_norm_and_check(m, scope) {
            continue;
        }
        let tainted = tainted_names(m, scope);
        let lines: Vec<&Line> = m.scope_lines(scope).collect();
        for (k, line) in lines.iter().enumerate() {
            let whole = Expr::new(line, 0, line.text.len());
            let user = |e: &Expr<'_>| {
                tainted.iter().any(|n| mentions(e, n))
                    || USER_SOURCES.iter().any(|s| e.masked().contains(s))
            };
            let mut built = false;
            for (s, e) in call_args(line, "os.path.join(")
                .into_iter()
                .chain(call_args(line, "Path("))
            {
                let args = Expr::args(line, s, e);
                if args.len() >= 2 && args[1..].iter().any(user) {
                    built = true;
                }
            }
            let m_text = &line.masked;
            if !built
                && (m_text.contains(" / ")
                    || (whole.is_interpolated()
                        && line.strings.iter().any(|l| l.body.contains('/'))))
            {
                let rhs_start = m_text.find('=').map_or(0, |eq| eq + 1);
                built = user(&Expr::new(line, rhs_start, m_text.len()));
            }
            if !built {
                continue;
            }
            // The built path reaches a file operation: inline, or through the assigned name.
            let target = m_text
                .trim_start()
                .split('=')
                .next()
                .map(str::trim)
                .filter(|t| t.chars().all(|c| c.is_alphanumeric() || c == '_') && !t.is_empty());
            let reaches = lines[k..].iter().any(|l| {
                SINKS.iter().any(|sink| {
                    call_args(l, sink).into_iter().any(|(s, e)| {
                        let args = Expr::new(l, s, e);
                        (std::ptr::eq(*l, *line)) || target.is_some_and(|t| mentions(&args, t))
                    }) || (sink.starts_with('.')
                        && target.is_some_and(|t| l.masked.contains(&format!("{t}{sink}"))))
                })
            });
            if reaches {
                out.push(finding(WeaknessClass::PathTraversal, line));
            }
        }
    }
}

fn deserialization(m: &Module, out: &mut Vec<Finding>) {
    const ALWAYS: [&str; 12] = [
        "pickle.load(",
        "pickle.loads(",
        "cPickle.load(",
        "cPickle.loads(",
        "dill.load(",
        "dill.loads(",
        "marshal.load(",
        "marshal.loads(",
        "jsonpickle.decode(",
        "read_pickle(",
        "yaml.unsafe_load(",
        "yaml.unsafe_load_all(",
    ];
    for line in &m.lines {
        if ALWAYS.iter().any(|p| !call_args(line, p).is_empty()) {
            out.push(finding(WeaknessClass::UnsafeDeserialization, line));
            continue;
        }
        for p in ["yaml.load(", "yaml.load_all("] {
            for (s, e) in call_args(line, p) {
                let args = Expr::args(line, s, e);
                let loader = arg_or_kw(&args, 1, "Loader");
                let ok = loader.is_some_and(|l| {
                    let t = l.text();
                    let last = t.rsplit('.').next().unwrap_or(t);
                    matches!(
                        last,
                        "SafeLoader" | "CSafeLoader" | "BaseLoader" | "CBaseLoader"
                    )
                });
                if !ok {
                    out.push(finding(WeaknessClass::UnsafeDeserialization, line));
                }
            }
        }
    }
}

fn html_literal(m: &Module, e: &Expr<'_>) -> bool {
    if e.strings().any(|l| l.body.contains('<')) {
        return true;
    }
    // A module-level constant template, e.g. `PAGE.format(x)`.
    m.scope_lines(0).any(|l| {
        l.masked
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .is_some_and(|lhs| is_constant_name(lhs) && mentions(e, lhs))
            && l.strings.iter().any(|s| s.body.contains('<'))
    })
}

fn html(m: &Module, out: &mut Vec<Finding>) {
    let jinja_import = m
        .lines
        .iter()
        .any(|l| l.masked.trim_start().starts_with("from jinja2 import"));
    let from_jinja = |name: &str| {
        m.lines.iter().any(|l| {
            let t = l.masked.trim_start();
            t.starts_with("from jinja2 import") && contains_word(t, name)
        })
    };
    for line in &m.lines {
        let mut flagged = false;
        for p in ["render_template_string(", "Markup(", "make_response("] {
            for (s, e) in call_args(line, p) {
                let args = Expr::args(line, s, e);
                let Some(first) = arg_or_kw(&args, 0, "source") else {
                    continue;
                };
                let html_needed = p == "make_response(";
                let bad =
                    |x: &Expr<'_>| x.is_interpolated() && (!html_needed || html_literal(m, x));
                if bad(&first) {
                    flagged = true;
                } else if let Some(name) = first.as_name() {
                    if let Some((l, _)) =
                        assignments(m, line, name).into_iter().find(|(_, r)| bad(r))
                    {
                        out.push(finding(WeaknessClass::UnescapedHtml, l));
                    }
                }
            }
        }
        let mut ctor = call_args(line, "jinja2.Template(");
        if jinja_import && from_jinja("Template") {
            ctor.extend(call_args(line, "Template("));
        }
        let mut envs = call_args(line, "jinja2.Environment(");
        if jinja_import && from_jinja("Environment") {
            envs.extend(call_args(line, "Environment("));
        }
        for (s, e) in ctor.into_iter().chain(envs) {
            let args = Expr::args(line, s, e);
            let on = kw_value(&args, "autoescape")
                .is_some_and(|v| v.text() != "False" && v.text() != "0" && v.text() != "None");
            if !on {
                flagged = true;
            }
        }
        if line.strings.iter().any(|l| {
            l.body.contains("{{") && (l.body.contains("|safe") || l.body.contains("| safe"))
        }) {
            flagged = true;
        }
        if flagged {
            out.push(finding(WeaknessClass::UnescapedHtml, line));
        }
    }
    // Flask views returning formatted HTML.
    for (idx, scope) in m.scopes.iter().enumerate().skip(1) {
        let is_view = scope
            .decorators
            .iter()
            .any(|d| d.contains(".route(") || d.contains(".get(") || d.contains(".post("));
        if !is_view {
            continue;
        }
        for line in m.scope_lines(idx) {
            let t = line.masked.trim_start();
            let Some(rest) = t.strip_prefix("return ") else {
                continue;
            };
            let start = line.masked.len() - rest.len();
            let parts = Expr::args(line, start, line.masked.len());
            let Some(first) = parts.into_iter().next() else {
                continue;
            };
            let bad = |x: &Expr<'_>| x.is_interpolated() && html_literal(m, x);
            if bad(&first) {
                out.push(finding(WeaknessClass::UnescapedHtml, line));
            } else if let Some(name) = first.as_name() {
                if let Some((l, _)) = assignments(m, line, name).into_iter().find(|(_, r)| bad(r)) {
                    out.push(finding(WeaknessClass::UnescapedHtml, l));
                }
            }
        }
    }
}

/// Evaluates a file-mode expression: integer literals (octal `0o…`, legacy `0…`, decimal,
/// hex) and `stat.S_I…` flags joined by `|` or `+`.
fn mode_value(text: &str) -> Option<u32> {
    let mut total = 0u32;
    for part in text.split(['|', '+']) {
        let p = part.trim().trim_matches(['(', ')']).trim();
        let flag = p.rsplit('.').next().unwrap_or(p);
        let v = match flag {
            "S_IRWXU" => 0o700,
            "S_IRUSR" => 0o400,
            "S_IWUSR" => 0o200,
            "S_IXUSR" => 0o100,
            "S_IRWXG" => 0o070,
            "S_IRGRP" => 0o040,
            "S_IWGRP" => 0o020,
            "S_IXGRP" => 0o010,
            "S_IRWXO" => 0o007,
            "S_IROTH" => 0o004,
            "S_IWOTH" => 0o002,
            "S_IXOTH" => 0o001,
            _ => {
                let lower = p.to_ascii_lowercase().replace('_', "");
                if let Some(o) = lower.strip_prefix("0o") {
                    u32::from_str_radix(o, 8).ok()?
                } else if let Some(h) = lower.strip_prefix("0x") {
                    u32::from_str_radix(h, 16).ok()?
                } else if lower.len() > 1 && lower.starts_with('0') {
                    u32::from_str_radix(&lower[1..], 8).ok()?
                } else {
                    lower.parse().ok()?
                }
            }
        };
        total |= v;
    }
    Some(total)
}

fn world_writable(m: &Module, out: &mut Vec<Finding>) {
    for line in &m.lines {
        for p in [".chmod(", ".fchmod(", ".lchmod(", "chmod("] {
            for (s, e) in call_args(line, p) {
                let args = Expr::args(line, s, e);
                let mode = kw_value(&args, "mode").or_else(|| {
                    args.iter()
                        .rfind(|a| a.keyword().is_none())
                        .map(|a| Expr::new(a.line, a.start, a.end))
                });
                if mode
                    .and_then(|v| mode_value(v.text()))
                    .is_some_and(|v| v & 0o002 != 0)
                {
                    out.push(finding(WeaknessClass::WorldWritable, line));
                }
            }
        }
        for (s, e) in call_args(line, "os.umask(") {
            let args = Expr::args(line, s, e);
            if args
                .first()
                .and_then(|v| mode_value(v.text()))
                .is_some_and(|v| v & 0o002 == 0)
            {
                out.push(finding(WeaknessClass::WorldWritable, line));
            }
        }
    }
}

fn archive(m: &Module, out: &mut Vec<Finding>) {
    let uses_tar = m.code_contains("tarfile");
    for line in &m.lines {
        for (s, e) in call_args(line, "shutil.unpack_archive(") {
            let args = Expr::args(line, s, e);
            if kw_value(&args, "filter").is_none() {
                out.push(finding(WeaknessClass::ArchiveExtraction, line));
            }
        }
        if !uses_tar {
            continue;
        }
        for (s, e) in call_args(line, ".extractall(") {
            let args = Expr::args(line, s, e);
            let filtered = kw_value(&args, "filter").is_some_and(|v| v.text() != "None");
            if !filtered && kw_value(&args, "members").is_none() {
                out.push(finding(WeaknessClass::ArchiveExtraction, line));
            }
        }
        for (s, e) in call_args(line, ".extract(") {
            let args = Expr::args(line, s, e);
            let filtered = kw_value(&args, "filter").is_some_and(|v| v.text() != "None");
            if !filtered && !has_norm_and_check(m, line.scope) {
                out.push(finding(WeaknessClass::ArchiveExtraction, line));
            }
        }
    }
}

fn tempfile(m: &Module, out: &mut Vec<Finding>) {
    for line in &m.lines {
        let hit = ["mktemp(", "os.tempnam(", "os.tmpnam("]
            .iter()
            .any(|p| !call_args(line, p).is_empty());
        if hit {
            out.push(finding(WeaknessClass::InsecureTempfile, line));
        }
    }
}
