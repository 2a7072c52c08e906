//! Reports for selfaware runs, built from the results model alone.
//!
//! The orchestrator fills a [`Results`] from a run's records and calls [`write_report`], which
//! writes four files into the run directory:
//!
//! * `results.json` — the [`Results`] itself (pretty JSON); [`read_results`] reads it back,
//!   so a report can be rebuilt without the ML stack;
//! * `report.html` — [`render_html`]: one self-contained page with inline SVG figures in the
//!   paper's style (grouped bars with 95% intervals and per-seed dots, per-question panels
//!   against the baseline, self-report vs behaviour scatters with per-cluster fits), the
//!   table of means, condition differences (each with the smallest difference it could have
//!   detected), how each number was computed and a per-seed
//!   appendix linking every number to its records file;
//! * `report.md` — [`render_markdown`]: the same tables in Markdown;
//! * `results.csv` — [`render_csv`]: every number in long format, condition differences
//!   with their detectable differences included.
//!
//! [`compare`] and [`render_comparison_text`] put two runs side by side.
//!
//! Everything here is pure and deterministic: the same [`Results`] gives byte-identical
//! files (no timestamps are generated here; provenance comes from the run). No printing, no
//! environment variables, no network.

#![warn(missing_docs)]

mod compare;
pub mod control;
mod csv;
mod error;
pub mod format;
mod html;
pub mod inside;
mod markdown;
pub mod results;
mod steering;
pub mod svg;

use std::path::{Path, PathBuf};

pub use compare::{
    compare, render_comparison_text, CellDiff, CellValue, ProvenanceDiff, RunComparison,
};
pub use csv::{csv_field, render_csv, MetricKind, CSV_COLUMNS};
pub use error::ReportError;
pub use html::{render_html, CSS, MAX_METRICS_PER_FIGURE};
pub use markdown::{render_markdown, render_summary_text};
pub use results::{
    Cell, Comparison, Condition, Fit, Metric, Point, Results, Scatter, SeedValue, Steered,
    RESULTS_VERSION,
};
pub use svg::{bar_geometry, BarGeometry};

/// File names [`write_report`] writes, in order.
pub const REPORT_FILES: [&str; 4] = ["results.json", "report.html", "report.md", "results.csv"];

/// Serializes results as pretty JSON with a trailing newline (the `results.json` format).
pub fn results_to_json(r: &Results) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(r).map_err(ReportError::Serialize)?;
    s.push('\n');
    Ok(s)
}

/// Checks what the renderers and `results.json` rely on: the version is
/// [`RESULTS_VERSION`], every number is finite, every cell and comparison names a declared
/// condition, and every range is finite with `low < high`.
pub fn validate(r: &Results) -> Result<(), ReportError> {
    if r.results_version != RESULTS_VERSION {
        return Err(ReportError::UnsupportedVersion {
            path: PathBuf::new(),
            found: u64::from(r.results_version),
            expected: RESULTS_VERSION,
        });
    }
    let invalid = |field: String, problem: &str| ReportError::Invalid {
        field,
        problem: problem.to_string(),
    };
    let finite = |field: String, v: Option<f64>| match v {
        Some(x) if !x.is_finite() => Err(invalid(
            field,
            &format!("is {x}, expected a finite number or null"),
        )),
        _ => Ok(()),
    };
    let known = |field: String, id: &str| {
        if r.conditions.iter().any(|c| c.id == id) {
            Ok(())
        } else {
            Err(invalid(
                field,
                &format!("names condition `{id}`, which is not in `conditions`"),
            ))
        }
    };
    for (i, c) in r.conditions.iter().enumerate() {
        if r.conditions[..i].iter().any(|o| o.id == c.id) {
            return Err(invalid(
                format!("conditions[{i}].id"),
                &format!("`{}` is declared twice", c.id),
            ));
        }
    }
    for (list, metrics) in [("probes", &r.probes), ("questions", &r.questions)] {
        for (i, m) in metrics.iter().enumerate() {
            let at = format!("{list}[{i}] (`{}`)", m.id);
            let (lo, hi) = m.range;
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(invalid(
                    format!("{at}.range"),
                    &format!("is ({lo}, {hi}), expected two finite numbers with low < high"),
                ));
            }
            for (j, cell) in m.cells.iter().enumerate() {
                let at = format!("{at}.cells[{j}]");
                known(format!("{at}.condition"), &cell.condition)?;
                finite(format!("{at}.mean"), cell.mean)?;
                finite(format!("{at}.ci_low"), cell.ci_low)?;
                finite(format!("{at}.ci_high"), cell.ci_high)?;
                finite(format!("{at}.off_format"), cell.off_format)?;
                for (k, sv) in cell.per_seed.iter().enumerate() {
                    finite(format!("{at}.per_seed[{k}].value"), sv.value)?;
                }
            }
            for (j, c) in m.comparisons.iter().enumerate() {
                let at = format!("{at}.comparisons[{j}]");
                known(format!("{at}.a"), &c.a)?;
                known(format!("{at}.b"), &c.b)?;
                finite(format!("{at}.difference"), Some(c.difference))?;
                finite(format!("{at}.ci_low"), c.ci_low)?;
                finite(format!("{at}.ci_high"), c.ci_high)?;
                finite(format!("{at}.p_value"), c.p_value)?;
                finite(format!("{at}.detectable"), c.detectable)?;
            }
        }
    }
    for (i, s) in r.scatters.iter().enumerate() {
        let at = format!("scatters[{i}] (`{}`)", s.id);
        for (j, p) in s.points.iter().enumerate() {
            finite(format!("{at}.points[{j}].x"), Some(p.x))?;
            finite(format!("{at}.points[{j}].y"), Some(p.y))?;
        }
        for (j, f) in s.fits.iter().enumerate() {
            finite(format!("{at}.fits[{j}].slope"), Some(f.slope))?;
            finite(format!("{at}.fits[{j}].intercept"), Some(f.intercept))?;
            finite(format!("{at}.fits[{j}].r"), f.r)?;
            finite(format!("{at}.fits[{j}].r_ci_low"), f.r_ci_low)?;
            finite(format!("{at}.fits[{j}].r_ci_high"), f.r_ci_high)?;
        }
    }
    Ok(())
}

/// Writes `results.json`, `report.html`, `report.md` and `results.csv` into `dir` (created
/// if missing) and returns their paths in [`REPORT_FILES`] order.
///
/// The results are [validated](validate) first. Each file is written to a temporary file in
/// `dir`, synced, then renamed over the target, so a reader never sees a half-written file.
/// The same `r` always gives byte-identical files.
pub fn write_report(dir: &Path, r: &Results) -> Result<Vec<PathBuf>, ReportError> {
    validate(r)?;
    let contents = [
        results_to_json(r)?,
        render_html(r),
        render_markdown(r),
        render_csv(r),
    ];
    fs_err::create_dir_all(dir).map_err(|source| ReportError::Io {
        action: "creating directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::with_capacity(REPORT_FILES.len());
    for (name, text) in REPORT_FILES.iter().zip(contents) {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// [`selfaware_types::write_atomic`] (readable by everyone: report files are for sharing).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    selfaware_types::write_atomic(path, bytes).map_err(|source| ReportError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `results.json`.
///
/// Errors name the file: [`ReportError::Parse`] with serde's line and column for bad JSON or
/// a field that does not match the model, [`ReportError::UnsupportedVersion`] when
/// `results_version` is not [`RESULTS_VERSION`], [`ReportError::Invalid`] when the content
/// fails [`validate`].
pub fn read_results(path: impl AsRef<Path>) -> Result<Results, ReportError> {
    let path = path.as_ref();
    let text = fs_err::read_to_string(path).map_err(|source| ReportError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let version_error = |found: u64| ReportError::UnsupportedVersion {
        path: path.to_path_buf(),
        found,
        expected: RESULTS_VERSION,
    };
    // Look at the version first: a file from another version may not match this model.
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("results_version").and_then(|x| x.as_u64()));
    if let Some(found) = version {
        if found != u64::from(RESULTS_VERSION) {
            return Err(version_error(found));
        }
    }
    let r: Results = serde_json::from_str(&text).map_err(|e| {
        // serde appends " at line L column C"; the error already shows them as path:L:C.
        let mut message = e.to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        ReportError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    validate(&r).map_err(|e| match e {
        ReportError::UnsupportedVersion { found, .. } => version_error(found),
        ReportError::Invalid { field, problem } => ReportError::Invalid {
            field: format!("{}: {field}", path.display()),
            problem,
        },
        other => other,
    })?;
    Ok(r)
}
