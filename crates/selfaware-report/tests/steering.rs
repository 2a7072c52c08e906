//! Steered conditions are drawn and tabled against their multiplier.

mod common;

use common::{check_well_formed, sample};
use selfaware_report::{render_html, render_markdown, Cell, Condition, Results, Steered};

/// `sample()` plus a steered group "st" at α = 4, -4, 0 (given out of order) and a lone steered
/// condition "solo"; every metric's steered cells are `base + alpha / 10` with a ±0.05
/// interval over 3 seeds.
fn steered() -> Results {
    let mut r = sample();
    let mut add = |id: &str, group: &str, alpha: f64| {
        r.conditions.push(Condition {
            id: id.into(),
            label: format!("Steered (α = {alpha})"),
            baseline: false,
            n_seeds: 3,
            positive_control: false,
            steer: Some(Steered {
                group: group.into(),
                group_label: "Steered along bark − ring".into(),
                vector: "bark-ring.safetensors".into(),
                point: "blocks.12.hook_resid_post".into(),
                alpha,
            }),
        });
        for m in r.probes.iter_mut().chain(r.questions.iter_mut()) {
            let v = 0.5 * (m.range.0 + m.range.1) + alpha / 10.0 * (m.range.1 - m.range.0);
            let half = 0.05 * (m.range.1 - m.range.0);
            m.cells.push(Cell {
                condition: id.into(),
                mean: Some(v),
                ci_low: Some(v - half),
                ci_high: Some(v + half),
                interval_method: "percentile bootstrap over 3 seeds".into(),
                off_format: None,
                per_seed: vec![],
            });
        }
    };
    add("st-a4", "st", 4.0);
    add("st-a-4", "st", -4.0);
    add("st-a0", "st", 0.0);
    add("solo-a1", "solo", 1.0);
    r
}

#[test]
fn a_steered_group_is_drawn_against_alpha_in_order() {
    let r = steered();
    let html = render_html(&r);
    check_well_formed(&html).unwrap();
    let start = html
        .find("<section id=\"steering\">")
        .expect("a steering section");
    let section = &html[start..html[start..].find("</section>").unwrap() + start];
    // One figure (the lone condition is no group), one panel per probe and question.
    assert_eq!(section.matches("<figure").count(), 1);
    let panels = r.probes.len() + r.questions.len();
    assert_eq!(section.matches("<path d=\"M").count(), panels);
    assert_eq!(section.matches("<circle").count(), 3 * panels);
    // Points in α order along each line: -4, 0, 4.
    let a = section.find("α = -4:").unwrap();
    let b = section.find("α = 0:").unwrap();
    let c = section.find("α = 4:").unwrap();
    assert!(a < b && b < c);
    // The table's columns are in α order too, with the hand-computed cells.
    assert!(section.contains("<th>α = -4</th><th>α = 0</th><th>α = 4</th>"));
    let probe = &r.probes[0];
    let lo = 0.5 * (probe.range.0 + probe.range.1) - 0.4 * (probe.range.1 - probe.range.0);
    let cell = selfaware_report::format::format_mean_ci(
        Some(lo),
        Some(lo - 0.05 * (probe.range.1 - probe.range.0)),
        Some(lo + 0.05 * (probe.range.1 - probe.range.0)),
        probe.range,
    );
    assert!(
        section.contains(&format!("<td class=\"num\">{cell}</td>")),
        "{cell}"
    );
    assert!(section.contains("<code>blocks.12.hook_resid_post</code>"));
    assert!(!section.contains("solo"), "a group of one is not drawn");

    let md = render_markdown(&r);
    let at = md.find("## Against the steering multiplier").unwrap();
    let md = &md[at..];
    assert!(md.contains("| metric | α = -4 | α = 0 | α = 4 |"));
    assert!(md.contains(&selfaware_report::format::escape_markdown(&cell)));
}

#[test]
fn a_run_without_steering_has_no_steering_section() {
    let r = sample();
    assert!(!render_html(&r).contains("id=\"steering\""));
    assert!(!render_markdown(&r).contains("steering multiplier"));
}
