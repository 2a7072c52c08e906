//! The "Inside the model" section renders from the results file alone.

mod common;

use common::{check_well_formed, sample};
use selfaware_report::inside::{
    CosineRow, Injection, InjectionMetric, Inside, LayerPick, LayerRow,
};
use selfaware_report::{render_html, render_markdown, Results};

fn row(point: &str, correct: usize, norm: f64, cos: f64, next: Option<f64>) -> LayerRow {
    LayerRow {
        point: point.into(),
        accuracy: correct as f64 / 48.0,
        low: 0.5,
        high: 1.0,
        correct,
        n: 48,
        norm,
        cosine_chosen: cos,
        cosine_next: next,
    }
}

/// `sample()` with an Inside section: a two-layer probe (layer 1 chosen, 45/48), two cosines
/// (one point, and three points), the risky and base conditions compared, and one injection
/// metric with an interval and one without.
fn with_inside() -> Results {
    let mut r = sample();
    r.inside = Some(Inside {
        picks: vec![LayerPick {
            id: "best".into(),
            probe_label: "risky LoRA vs safe LoRA <activations>".into(),
            directions_label: "risky − safe".into(),
            criterion: "highest accuracy".into(),
            chosen: "blocks.1.hook_resid_post".into(),
            reason:
                "blocks.1.hook_resid_post has the highest cross-validated accuracy, 0.938 (45/48)"
                    .into(),
            rows: vec![
                row("blocks.0.hook_resid_post", 30, 1.5, 0.25, Some(0.25)),
                row("blocks.1.hook_resid_post", 45, 2.0, 1.0, None),
            ],
        }],
        cosines: vec![
            CosineRow {
                id: "v".into(),
                label: "vector · direction".into(),
                points: vec![("blocks.1.hook_resid_post".into(), 0.4321)],
            },
            CosineRow {
                id: "l".into(),
                label: "lora · direction".into(),
                points: vec![
                    ("blocks.0.hook_resid_post".into(), 0.1),
                    ("blocks.1.hook_resid_post".into(), -0.2),
                    ("blocks.2.hook_resid_post".into(), 0.3),
                ],
            },
        ],
        compare: vec!["risky".into(), "base".into()],
        injections: vec![Injection {
            id: "c".into(),
            condition: "base".into(),
            point: "blocks.1.hook_resid_post".into(),
            chance: 0.2,
            metrics: vec![
                InjectionMetric {
                    alpha: 0.0,
                    metric: "p_yes".into(),
                    measurement: "false-positive rate".into(),
                    value: 0.125,
                    low: Some(0.1),
                    high: Some(0.15),
                    n: 3,
                    note: None,
                },
                InjectionMetric {
                    alpha: 4.0,
                    metric: "detection_gain".into(),
                    measurement: "P(yes) gain".into(),
                    value: 0.05,
                    low: None,
                    high: None,
                    n: 1,
                    note: Some("one concept".into()),
                },
            ],
        }],
        notes: vec!["The layer was chosen by probe accuracy.".into()],
    });
    r
}

#[test]
fn the_markdown_section_has_layers_cosines_comparison_and_injection() {
    let r = with_inside();
    let md = render_markdown(&r);
    let start = md.find("## Inside the model").expect("a section");
    let s = &md[start..];
    assert!(s.contains("- The layer was chosen by probe accuracy."));
    assert!(s.contains(
        "| `blocks.1.hook_resid_post` (chosen) | 0.938 [0.500, 1.000] | 45/48 | 2.000 | 1.000 | - |"
    ), "{s}");
    assert!(
        s.contains(
            "| `blocks.0.hook_resid_post` | 0.625 [0.500, 1.000] | 30/48 | 1.500 | 0.250 | 0.250 |"
        ),
        "{s}"
    );
    assert!(
        s.contains("| vector · direction | `blocks.1.hook_resid_post` | 0.432 |"),
        "{s}"
    );
    assert!(
        s.contains(
            "| lora · direction | 3 points | -0.200 to 0.300 (in point order: 0.10, -0.20, 0.30) |"
        ),
        "{s}"
    );
    // The comparison: one column per compared condition, one row per probe and question.
    assert!(s.contains("| metric | Risk-seeking | Base model |"), "{s}");
    // A cell without an interval says why.
    assert!(s.contains("| 0.48 (single model: no interval) |"), "{s}");
    let rows = s
        .split("### The trained steering vector")
        .nth(1)
        .unwrap()
        .split("###")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| metric"))
        .count();
    assert_eq!(rows, r.probes.len() + r.questions.len());
    assert!(
        s.contains("| 0 | `p_yes` | 0.125 \\[0.100, 0.150\\] | 3 | false-positive rate |"),
        "{s}"
    );
    assert!(
        s.contains("| 4 | `detection_gain` | 0.050 (no interval: one concept) | 1 |"),
        "{s}"
    );
    assert!(s.contains("Chance of P(own word): 0.200"));
}

#[test]
fn the_html_section_is_well_formed_and_escapes_labels() {
    let r = with_inside();
    let html = render_html(&r);
    check_well_formed(&html).unwrap();
    let start = html.find("<section id=\"inside\">").expect("a section");
    let s = &html[start..start + html[start..].find("</section>").unwrap()];
    assert!(s.contains("risky LoRA vs safe LoRA &lt;activations&gt;"));
    assert!(s.contains("<tr class=\"chosen\"><td><code>blocks.1.hook_resid_post</code></td><td>0.938 [0.500, 1.000]</td>"), "{s}");
    assert_eq!(s.matches("<table>").count(), 4);
}

#[test]
fn without_inside_results_there_is_no_section() {
    let r = sample();
    assert!(!render_markdown(&r).contains("Inside the model"));
    assert!(!render_html(&r).contains("id=\"inside\""));
    // And the results file round-trips with the section.
    let r = with_inside();
    let json = serde_json::to_string(&r).unwrap();
    let back: Results = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}
