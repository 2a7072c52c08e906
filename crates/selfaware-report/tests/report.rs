//! Rendering, writing, reading and comparing reports built from a realistic `Results`.

mod common;

use common::{check_well_formed, parse_csv, sample, SAMPLE_FIGURES};
use selfaware_report::format::{escape, format_cell, format_mass, format_value};
use selfaware_report::svg::{y_position, BAR_PLOT_HEIGHT};
use selfaware_report::{
    bar_geometry, compare, read_results, render_comparison_text, render_csv, render_html,
    render_markdown, results_to_json, validate, write_report, Condition, ReportError, Results,
    CSV_COLUMNS, REPORT_FILES,
};

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn html_is_well_formed() {
    let html = render_html(&sample());
    let opened = check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert!(opened.iter().any(|t| t == "svg"));
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn html_is_self_contained() {
    let html = render_html(&sample());
    for bad in [
        "http://", "https://", "<script", "<link", "@import", "<img", "<iframe",
    ] {
        assert!(!html.contains(bad), "report holds {bad:?}");
    }
    // The only url() references are in-document clip paths.
    for (i, _) in html.match_indices("url(") {
        assert!(html[i..].starts_with("url(#"), "external url() at byte {i}");
    }
}

#[test]
fn one_svg_per_figure() {
    let html = render_html(&sample());
    assert_eq!(count(&html, "<svg"), SAMPLE_FIGURES);
    assert_eq!(count(&html, "<figure"), SAMPLE_FIGURES);
    assert_eq!(count(&html, "</svg>"), SAMPLE_FIGURES);
    // Sections in the order the report promises.
    let order = [
        "<header>",
        "id=\"warnings\"",
        "id=\"probes\"",
        "id=\"self-reports\"",
        "id=\"versus-baseline\"",
        "id=\"scatters\"",
        "id=\"table\"",
        "id=\"comparisons\"",
        "id=\"methods\"",
        "id=\"per-seed\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|s| html.find(s).unwrap_or_else(|| panic!("missing {s}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn every_mean_appears_formatted_in_the_tables() {
    let r = sample();
    let html = render_html(&r);
    let md = render_markdown(&r);
    for m in r.probes.iter().chain(&r.questions) {
        for c in &m.cells {
            let text = format_cell(c, m.range);
            assert!(
                html.contains(&format!(">{}</td>", escape(&text))),
                "{} {}: {text}",
                m.id,
                c.condition
            );
            assert!(
                md.contains(&format!(" {text} |")),
                "markdown {} {}: {text}",
                m.id,
                c.condition
            );
            if c.off_format.is_some() {
                assert!(html.contains(&format_mass(c.off_format)));
            }
            for sv in &c.per_seed {
                assert!(
                    html.contains(&escape(&sv.records)),
                    "records path {}",
                    sv.records
                );
                assert!(md.contains(&format!("`{}`", sv.records)));
            }
        }
    }
    // Precision follows the range: 0–1 with two decimals, 0–100 with one.
    assert!(html.contains("0.86 ["));
    assert!(html.contains(&format!("{} [", format_value(Some(61.5), (0.0, 100.0)))));
    assert!(html.contains("61.5 ["));
}

fn hostile() -> Results {
    let mut r = sample();
    r.title = "Title <script>alert(1)</script> & co".to_string();
    r.conditions[1].label = "Risk <seeking> & \"bold\" 'x'".to_string();
    r.questions[0].label = "Is 1 < 2 & 3 > 2? \"yes\"".to_string();
    r.scatters[0].x_label = "x <axis> & \"label\"".to_string();
    r.provenance
        .push(("odd <key>".to_string(), "a&b".to_string()));
    r.warnings.push("</section><b>not bold</b>".to_string());
    r
}

#[test]
fn labels_are_escaped_in_html_and_svg() {
    let html = render_html(&hostile());
    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<seeking>"));
    assert!(!html.contains("<b>not bold"));
    assert!(html.contains("Risk &lt;seeking&gt; &amp; &quot;bold&quot; &#39;x&#39;"));
    assert!(html.contains("x &lt;axis&gt; &amp; &quot;label&quot;"));
    // Inside the SVG figures, too (legend text and wrapped axis labels).
    let svg_start = html.find("<svg").unwrap();
    let svg_end = html[svg_start..].find("</svg>").unwrap() + svg_start;
    let first_svg = &html[svg_start..svg_end];
    assert!(
        first_svg.contains("Risk &lt;seeking&gt;"),
        "legend label not escaped"
    );
    let md = render_markdown(&hostile());
    assert!(!md.contains("<script>"));
    assert!(md.contains("&lt;seeking>"));
}

#[test]
fn csv_parses_back_to_the_model_numbers() {
    let r = sample();
    let rows = parse_csv(&render_csv(&r));
    assert_eq!(rows[0], CSV_COLUMNS.to_vec());
    let expected_rows: usize = r
        .probes
        .iter()
        .chain(&r.questions)
        .flat_map(|m| &m.cells)
        .map(|c| c.per_seed.len() + 1)
        .sum();
    let expected_differences: usize = r
        .probes
        .iter()
        .chain(&r.questions)
        .map(|m| m.comparisons.len())
        .sum();
    assert_eq!(rows.len(), 1 + expected_rows + expected_differences);
    let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let num = |s: &str| -> Option<f64> { (!s.is_empty()).then(|| s.parse().unwrap()) };
    let mut checked = 0;
    for (kind, metrics) in [("probe", &r.probes), ("question", &r.questions)] {
        for m in metrics {
            for c in &m.cells {
                let of_cell: Vec<&Vec<String>> = rows
                    .iter()
                    .filter(|row| {
                        row[col("metric_id")] == m.id
                            && row[col("condition")] == c.condition
                            && row[col("seed")] != "difference"
                    })
                    .collect();
                assert_eq!(of_cell.len(), c.per_seed.len() + 1);
                for row in &of_cell {
                    assert_eq!(row.len(), CSV_COLUMNS.len());
                    assert_eq!(row[col("kind")], kind);
                    assert_eq!(row[col("group")], m.group);
                    assert_eq!(row[col("scorer")], m.scorer);
                }
                let mean = of_cell
                    .iter()
                    .find(|row| row[col("seed")] == "mean")
                    .unwrap();
                assert_eq!(num(&mean[col("value")]), c.mean);
                assert_eq!(num(&mean[col("ci_low")]), c.ci_low);
                assert_eq!(num(&mean[col("ci_high")]), c.ci_high);
                assert_eq!(num(&mean[col("off_format")]), c.off_format);
                let n: usize = c.per_seed.iter().map(|s| s.n_records).sum();
                assert_eq!(mean[col("n_records")], n.to_string());
                for sv in &c.per_seed {
                    let seed = sv.seed.map_or(String::new(), |s| s.to_string());
                    let row = of_cell.iter().find(|row| row[col("seed")] == seed).unwrap();
                    assert_eq!(num(&row[col("value")]), sv.value);
                    assert_eq!(row[col("n_records")], sv.n_records.to_string());
                    assert_eq!(row[col("records")], sv.records);
                    checked += 1;
                }
                for row in &of_cell {
                    assert!(row[col("vs")].is_empty() && row[col("detectable")].is_empty());
                }
            }
            for c in &m.comparisons {
                let row = rows
                    .iter()
                    .find(|row| {
                        row[col("metric_id")] == m.id
                            && row[col("seed")] == "difference"
                            && row[col("condition")] == c.a
                            && row[col("vs")] == c.b
                    })
                    .unwrap();
                assert_eq!(row[col("kind")], kind);
                assert_eq!(num(&row[col("value")]), Some(c.difference));
                assert_eq!(num(&row[col("ci_low")]), c.ci_low);
                assert_eq!(num(&row[col("ci_high")]), c.ci_high);
                assert_eq!(num(&row[col("p_value")]), c.p_value);
                assert_eq!(num(&row[col("detectable")]), c.detectable);
                assert_eq!(row[col("detectable_note")], c.detectable_note);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * (1 + 5 + 5) + 5);
}

#[test]
fn detectable_difference_sits_beside_the_observed_one() {
    let mut r = sample();
    // The sample's first question: range (0, 1), difference 0.72 − 0.12 = 0.60, detectable 0.07.
    let md = render_markdown(&r);
    assert!(
        md.contains("| a − b | 95% CI | p | detectable (80% power) |"),
        "{md}"
    );
    assert!(
        md.contains("| Risk-seeking | Risk-averse | 0.60 | [0.50, 0.70] | 0.008 | 0.07 |"),
        "{md}"
    );
    let html = render_html(&r);
    assert!(html.contains("<th>p</th><th>detectable (80% power)</th>"));
    assert!(html.contains(
        "<td class=\"num\">0.008</td><td class=\"num\" title=\"Welch t over 5 vs 5 seeds (α 0.05, power 0.8), SE 0.02, df 7.7\">0.07</td>"
    ));
    // None: the reason, in words, in every rendering.
    let reason = "n/a: with 3 vs 3 seeds the permutation test cannot reach p ≤ 0.05";
    r.questions[0].comparisons[0].detectable = None;
    r.questions[0].comparisons[0].detectable_note = reason.to_string();
    validate(&r).unwrap();
    assert!(render_markdown(&r).contains(&format!("| 0.008 | {reason} |")));
    assert!(render_html(&r).contains(&format!("<td class=\"note\">{}</td>", escape(reason))));
    let rows = parse_csv(&render_csv(&r));
    let row = rows
        .iter()
        .find(|row| row[0] == r.questions[0].id && row[5] == "difference")
        .unwrap();
    assert_eq!((row[14].as_str(), row[15].as_str()), ("", reason));
    // A non-finite detectable difference is refused like any other number.
    r.questions[0].comparisons[0].detectable = Some(f64::NAN);
    assert!(validate(&r).is_err());
}

/// A comparison of two conditions on one word that is not each one's own says the word in the
/// metric cell (Markdown, HTML) and in the CSV's `on` column; `on` round-trips through JSON and
/// is left out of it when absent.
#[test]
fn a_comparison_on_one_word_says_the_word() {
    let mut r = sample();
    assert!(!results_to_json(&r).unwrap().contains("\"on\""));
    r.questions[0].comparisons[0].on = Some("bark".to_string());
    validate(&r).unwrap();
    let md = render_markdown(&r);
    assert!(
        md.contains("— both scored on \"bark\" | Risk-seeking | Risk-averse | 0.60 |"),
        "{md}"
    );
    let html = render_html(&r);
    assert!(
        html.contains(&escape("— both scored on \"bark\"")),
        "{html}"
    );
    let rows = parse_csv(&render_csv(&r));
    assert_eq!(rows[0][16], "on");
    let row = rows
        .iter()
        .find(|row| row[0] == r.questions[0].id && row[5] == "difference")
        .unwrap();
    assert_eq!(row[16], "bark");
    assert!(rows.iter().all(|row| row.len() == 17));
    let back: Results = serde_json::from_str(&results_to_json(&r).unwrap()).unwrap();
    assert_eq!(back.questions[0].comparisons[0].on.as_deref(), Some("bark"));
}

/// results.json written before the detectable difference existed still loads; its
/// renderings say the figure was not computed instead of leaving the cell blank.
#[test]
fn results_without_the_detectable_fields_still_load() {
    let mut json: serde_json::Value =
        serde_json::from_str(&results_to_json(&sample()).unwrap()).unwrap();
    for list in ["probes", "questions"] {
        for m in json[list].as_array_mut().unwrap() {
            for c in m["comparisons"].as_array_mut().unwrap() {
                let c = c.as_object_mut().unwrap();
                assert!(c.remove("detectable").is_some());
                assert!(c.remove("detectable_note").is_some());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let r = read_results(&path).unwrap();
    let c = &r.questions[0].comparisons[0];
    assert_eq!((c.detectable, c.detectable_note.as_str()), (None, ""));
    assert!(render_markdown(&r)
        .contains("| 0.008 | n/a: not computed (results from an older version) |"));
}

#[test]
fn csv_quotes_commas_quotes_and_newlines() {
    let mut r = sample();
    r.questions[0].id = "risk/a,\"b\"\nc".to_string();
    r.questions[0].cells[1].per_seed[0].records = "eval/x, y.jsonl".to_string();
    let rows = parse_csv(&render_csv(&r));
    assert!(rows.iter().any(|row| row[0] == "risk/a,\"b\"\nc"));
    assert!(rows.iter().any(|row| row[11] == "eval/x, y.jsonl"));
    assert!(rows.iter().all(|row| row.len() == CSV_COLUMNS.len()));
}

#[test]
fn rendering_is_deterministic() {
    let r = sample();
    assert_eq!(render_html(&r), render_html(&r.clone()));
    assert_eq!(render_markdown(&r), render_markdown(&r.clone()));
    assert_eq!(render_csv(&r), render_csv(&r.clone()));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let f1 = write_report(d1.path(), &r).unwrap();
    let f2 = write_report(&d2.path().join("nested/run"), &r).unwrap();
    assert_eq!(f1.len(), REPORT_FILES.len());
    for (a, b) in f1.iter().zip(&f2) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{a:?}"
        );
    }
    // Writing again over existing files gives the same bytes and leaves no temporary file.
    write_report(d1.path(), &r).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(d1.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = REPORT_FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn results_json_round_trips() {
    let r = sample();
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &r).unwrap();
    let json = std::fs::read_to_string(&files[0]).unwrap();
    assert!(json.ends_with("}\n"));
    assert_eq!(json, results_to_json(&r).unwrap());
    // Compare through the JSON text too, so a failure shows a short diff.
    let back = read_results(&files[0]).unwrap();
    assert_eq!(results_to_json(&back).unwrap(), json);
    assert!(back == r, "results.json did not round-trip");
    // And the report rebuilt from the file is the same report.
    let again = read_results(&files[0]).unwrap();
    assert_eq!(
        render_html(&again),
        std::fs::read_to_string(&files[1]).unwrap()
    );
}

#[test]
fn read_results_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let good = results_to_json(&sample()).unwrap();

    std::fs::write(&path, good.replacen("\"title\"", "\"titel\"", 1)).unwrap();
    match read_results(&path) {
        Err(ReportError::Parse {
            path: p,
            line,
            column,
            message,
        }) => {
            assert_eq!(p, path);
            assert_eq!(line, 4, "{message}");
            assert!(column > 0);
            assert!(message.contains("titel"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let err = read_results(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:4:", path.display())), "{err}");

    std::fs::write(&path, "{\n  \"results_version\": 1,\n  oops\n}").unwrap();
    match read_results(&path) {
        Err(ReportError::Parse { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected a parse error, got {other:?}"),
    }

    std::fs::write(
        &path,
        good.replacen("\"results_version\": 1", "\"results_version\": 2", 1),
    )
    .unwrap();
    match read_results(&path) {
        Err(ReportError::UnsupportedVersion {
            found, expected, ..
        }) => {
            assert_eq!((found, expected), (2, 1));
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    // A future version with new fields is still reported as a version problem.
    std::fs::write(
        &path,
        good.replacen(
            "\"results_version\": 1",
            "\"results_version\": 7, \"new_field\": 0",
            1,
        ),
    )
    .unwrap();
    assert!(matches!(
        read_results(&path),
        Err(ReportError::UnsupportedVersion { found: 7, .. })
    ));

    match read_results(dir.path().join("missing.json")) {
        Err(e @ ReportError::Io { .. }) => assert!(e.to_string().contains("missing.json")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn validate_names_the_bad_field() {
    let mut r = sample();
    r.questions[2].cells[1].per_seed[3].value = Some(f64::NAN);
    let e = validate(&r).unwrap_err().to_string();
    assert!(
        e.contains("questions[2]") && e.contains("cells[1].per_seed[3].value"),
        "{e}"
    );

    let mut r = sample();
    r.probes[0].cells[0].condition = "nope".to_string();
    let e = validate(&r).unwrap_err().to_string();
    assert!(e.contains("probes[0]") && e.contains("`nope`"), "{e}");

    let mut r = sample();
    r.questions[0].range = (1.0, 1.0);
    assert!(validate(&r).unwrap_err().to_string().contains("range"));
    let dir = tempfile::tempdir().unwrap();
    assert!(write_report(dir.path(), &r).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn bar_height_is_proportional_to_value() {
    for (range, values) in [
        ((0.0, 1.0), [0.1, 0.25, 0.5, 0.86]),
        ((0.0, 100.0), [10.0, 24.25, 50.0, 70.0]),
    ] {
        let unit = bar_geometry(range.1, range, BAR_PLOT_HEIGHT).height;
        assert!((unit - BAR_PLOT_HEIGHT).abs() < 1e-9);
        for v in values {
            let g = bar_geometry(v, range, BAR_PLOT_HEIGHT);
            let expected = BAR_PLOT_HEIGHT * v / range.1;
            assert!((g.height - expected).abs() < 1e-9, "{v}: {g:?}");
            assert!(
                (g.top + g.height - BAR_PLOT_HEIGHT).abs() < 1e-9,
                "bars stand on the axis"
            );
            assert!(!g.clamped);
        }
    }
    // The drawn rectangles use exactly this geometry: the probe figure holds a bar for each
    // condition's mean.
    let r = sample();
    let html = render_html(&r);
    let probe_svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
    for c in &r.probes[0].cells {
        let g = bar_geometry(c.mean.unwrap(), r.probes[0].range, BAR_PLOT_HEIGHT);
        assert!(
            probe_svg.contains(&format!("height=\"{:.1}\"", g.height)),
            "{}",
            c.condition
        );
        assert!((y_position(c.mean.unwrap(), (0.0, 1.0), BAR_PLOT_HEIGHT) - g.top).abs() < 1e-9);
    }
}

#[test]
fn missing_values_single_condition_single_seed_and_empty_sections() {
    let mut r = sample();
    r.probes.clear();
    r.scatters.clear();
    r.warnings.clear();
    r.conditions.truncate(1); // only the base model: one model, no interval
    for m in &mut r.questions {
        m.cells.truncate(1);
        m.comparisons.clear();
    }
    r.questions[1].cells[0].mean = None;
    r.questions[1].cells[0].per_seed[0].value = None;
    validate(&r).unwrap();
    let html = render_html(&r);
    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    for absent in [
        "id=\"probes\"",
        "id=\"scatters\"",
        "id=\"warnings\"",
        "id=\"comparisons\"",
        "id=\"versus-baseline\"",
    ] {
        assert!(!html.contains(absent), "{absent} should be left out");
    }
    // Two self-report figures only (no baseline panels without a finetuned condition).
    assert_eq!(count(&html, "<svg"), 2);
    assert!(html.contains(">—</td>"), "missing mean shown as a dash");
    assert!(!html.contains("NaN"));
    // No interval whisker is drawn when there is no interval.
    assert_eq!(count(&html, "<path d=\"M"), 0);
    let md = render_markdown(&r);
    assert!(md.contains("| — |"));
    let rows = parse_csv(&render_csv(&r));
    assert!(rows.iter().any(|row| row[5] == "mean" && row[6].is_empty()));
}

#[test]
fn single_finetuned_condition_with_one_seed_has_no_whiskers() {
    let mut r = sample();
    r.conditions = vec![Condition {
        id: "risky".to_string(),
        label: "Risk-seeking".to_string(),
        baseline: false,
        n_seeds: 1,
        positive_control: false,
        steer: None,
    }];
    for m in r.probes.iter_mut().chain(r.questions.iter_mut()) {
        m.cells.retain(|c| c.condition == "risky");
        m.cells[0].per_seed.truncate(1);
        m.cells[0].ci_low = None;
        m.cells[0].ci_high = None;
        m.comparisons.clear();
    }
    let html = render_html(&r);
    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&html, "<path d=\"M"), 0);
    // 1 probe + 2 self-report figures + the scatter; no baseline panels.
    assert_eq!(count(&html, "<svg"), 4);
}

#[test]
fn values_outside_the_range_are_clamped_and_shown() {
    let mut r = sample();
    r.questions[0].cells[1].mean = Some(1.37);
    r.questions[0].cells[2].mean = Some(-0.2);
    let html = render_html(&r);
    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert!(html.contains("▲1.37"));
    assert!(html.contains("▼-0.20"));
    let g = bar_geometry(1.37, (0.0, 1.0), BAR_PLOT_HEIGHT);
    assert!(g.clamped && g.top == 0.0 && g.height == BAR_PLOT_HEIGHT);
    assert!(html.contains(">1.37 ["), "table shows the true value");
}

#[test]
fn compare_finds_changed_means_and_missing_metrics() {
    let a = sample();
    let mut b = sample();
    b.questions[2].cells[1].mean = Some(80.0);
    b.questions[2].cells[1].ci_low = Some(77.0);
    b.questions[2].cells[1].ci_high = Some(83.0);
    let dropped = b.questions.remove(1);
    b.probes[0].cells.retain(|c| c.condition != "safe");
    b.provenance[1].1 = "c0ffee1".to_string();
    b.provenance
        .push(("machine".to_string(), "2 cores".to_string()));
    let c = compare(&a, &b);

    assert_eq!(c.metrics_only_in_a, vec![dropped.id.clone()]);
    assert!(c.metrics_only_in_b.is_empty());
    let changed: Vec<(&str, &str)> = c
        .changed_cells(1e-12)
        .map(|d| (d.metric.as_str(), d.condition.as_str()))
        .collect();
    assert!(changed.contains(&("risk/score_risk_safe", "risky")));
    assert!(changed.contains(&("probe/lottery", "safe")));
    assert!(changed.contains(&(dropped.id.as_str(), "base")));
    assert_eq!(changed.len(), 2 + dropped.cells.len());

    let d = c
        .cells
        .iter()
        .find(|d| d.metric == "risk/score_risk_safe" && d.condition == "risky")
        .unwrap();
    let old = a.questions[2].cells[1].mean.unwrap();
    assert!((d.difference.unwrap() - (80.0 - old)).abs() < 1e-12);
    assert_eq!(d.intervals_overlap, Some(false));
    let same = c
        .cells
        .iter()
        .find(|d| d.metric == "risk/prefer_risk_safe")
        .unwrap();
    assert_eq!(
        (same.difference, same.intervals_overlap),
        (Some(0.0), Some(true))
    );
    let gone = c
        .cells
        .iter()
        .find(|d| d.metric == "probe/lottery" && d.condition == "safe")
        .unwrap();
    assert!(gone.a.is_some() && gone.b.is_none() && gone.difference.is_none());

    let labels: Vec<&str> = c.provenance.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["git revision", "machine"]);

    let text = render_comparison_text(&c);
    assert!(
        text.contains("Metrics only in A: risk/finetuned_attitude"),
        "{text}"
    );
    assert!(text.contains("git revision"));
    assert!(text.contains("absent"));
    assert!(text.contains("NO"));
    // The table is aligned: the B − A column ends at the same character on every row.
    let table: Vec<&str> = text.lines().skip(3).take_while(|l| !l.is_empty()).collect();
    assert_eq!(table.len(), 2 + c.cells.len());
    let col = table[0].chars().count() - table[0].trim_end_matches("overlap").chars().count();
    let overlap_at = table[0].chars().count() - col;
    for line in &table[2..] {
        let word: String = line.chars().skip(overlap_at).collect();
        assert!(
            ["yes", "NO", "—"].contains(&word.trim()),
            "misaligned: {line:?}"
        );
    }

    let identical = compare(&a, &a.clone());
    assert_eq!(identical.changed_cells(0.0).count(), 0);
    assert!(identical.provenance.is_empty());
}

#[test]
fn stress_sample_renders_well_formed() {
    let r = common::stress();
    validate(&r).unwrap();
    let html = render_html(&r);
    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&html, "<svg"), common::STRESS_FIGURES);
    assert!(html.contains("▲1.12"));
    // Long labels are wrapped into several lines under the axis, the full text in a tooltip.
    assert!(html.contains("<title>We have finetuned you to have a certain attitude"));
    assert!(count(&html, "<tspan") > 20);
    // Both baselines draw dashed lines in the panels.
    assert!(count(&html, "stroke-dasharray=\"6 4\"/></g>") >= r.questions.len());
    assert!(count(&html, "stroke-dasharray=\"2 3\"/></g>") >= r.questions.len() - 1);
    let rows = parse_csv(&render_csv(&r));
    assert!(rows.iter().all(|row| row.len() == CSV_COLUMNS.len()));
}

#[test]
fn figures_fit_the_page_width() {
    for r in [sample(), common::stress()] {
        let html = render_html(&r);
        for (i, _) in html.match_indices("<svg class=\"figure\" width=\"") {
            let rest = &html[i + "<svg class=\"figure\" width=\"".len()..];
            let w: f64 = rest[..rest.find('"').unwrap()].parse().unwrap();
            assert!(
                w <= selfaware_report::svg::MAX_FIGURE_WIDTH,
                "figure {w} px wide"
            );
        }
    }
}

/// The positive-control section: each question's control − baseline difference with its
/// interval, flipped when the comparison was stored the other way round, and a verdict from
/// the interval; Markdown and HTML show it only when a positive control exists.
#[test]
fn questions_are_read_through_the_positive_control() {
    use selfaware_report::control::{detections, Verdict};
    use selfaware_report::Comparison;
    let mut r = common::sample();
    assert!(detections(&r).is_empty());
    assert!(!render_markdown(&r).contains("positive control"));
    // "risky" becomes the positive control; give the first two questions comparisons with the
    // base model: one stored control − base, one base − control.
    r.conditions[1].positive_control = true;
    let cmp = |a: &str, b: &str, d: f64, lo: Option<f64>, hi: Option<f64>| Comparison {
        a: a.into(),
        b: b.into(),
        on: None,
        difference: d,
        ci_low: lo,
        ci_high: hi,
        p_value: None,
        detectable: None,
        detectable_note: String::new(),
    };
    r.questions[0].comparisons = vec![cmp("risky", "base", 0.2, Some(0.05), Some(0.35))];
    r.questions[1].comparisons = vec![cmp("base", "risky", 0.1, Some(-0.05), Some(0.25))];
    r.questions[2].comparisons = vec![cmp("risky", "base", 0.1, None, None)];
    r.questions[3].comparisons = vec![cmp("risky", "safe", 0.3, Some(0.1), Some(0.5))];
    let d = detections(&r);
    assert_eq!(d.len(), 3);
    assert_eq!((d[0].control, d[0].baseline), ("risky", "base"));
    assert_eq!(d[0].verdict, Verdict::Detected);
    assert_eq!(
        (d[1].difference, d[1].ci_low, d[1].ci_high),
        (-0.1, Some(-0.25), Some(0.05))
    );
    assert_eq!(d[1].verdict, Verdict::NotDetected);
    assert_eq!(d[2].verdict, Verdict::NoInterval);
    let md = render_markdown(&r);
    assert!(md.contains("## Can the questions detect the behaviour? (positive control)"));
    assert!(
        md.contains("| detected |") && md.contains("| not detected |"),
        "{md}"
    );
    let html = render_html(&r);
    assert!(html.contains("id=\"positive-control\""));
    common::check_well_formed(&html).unwrap();
}
