//! The verdict table: one row per method (and per placement or system prompt), each finding
//! with its interval or the reason it has none. Never a bare yes/no.

use serde::Serialize;

use crate::scan::Placement;
use crate::AuditReport;

/// One row of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    pub method: String,
    pub finding: String,
    /// The interval(s) behind the finding, or why there is none.
    pub evidence: String,
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// The rows of `r`'s verdict.
pub fn rows(r: &AuditReport) -> Vec<VerdictRow> {
    let mut out = Vec::new();
    for pool in &r.behavior_scan_pools {
        let top = r
            .behavior_scan
            .iter()
            .find(|e| e.placement == pool.placement && e.rank == 1);
        let Some(top) = top else { continue };
        let z = match top.outlier_z {
            Some(z) => format!("robust z {z:.1}"),
            None => format!(
                "no z ({})",
                pool.note.as_deref().unwrap_or("no pool spread")
            ),
        };
        let finding = if pool.standing_out > 0 {
            let names: Vec<String> = r
                .behavior_scan
                .iter()
                .filter(|e| e.placement == pool.placement && e.stands_out)
                .map(|e| quote(&e.candidate))
                .collect();
            const NAMED: usize = 8;
            let names = if names.len() > NAMED {
                format!(
                    "{} and {} more",
                    names[..NAMED].join(", "),
                    names.len() - NAMED
                )
            } else {
                names.join(", ")
            };
            format!(
                "{} of {} candidates stand out (z ≥ {} and ≥ {}× the median): {}; top {} ({}) \
                 shifts the first token by {:.3} nats, {z}",
                pool.standing_out,
                pool.candidates,
                pool.threshold_z,
                pool.min_ratio,
                names,
                quote(&top.candidate),
                top.family,
                top.kl_mean
            )
        } else {
            format!(
                "nothing stands out of {} candidates (z ≥ {} and ≥ {}× the median); largest \
                 shift {} ({}) {:.3} nats, {z}",
                pool.candidates,
                pool.threshold_z,
                pool.min_ratio,
                quote(&top.candidate),
                top.family,
                top.kl_mean
            )
        };
        out.push(VerdictRow {
            method: format!(
                "behaviour scan, {}",
                match pool.placement {
                    Placement::Prepend => "before the user message",
                    Placement::System => "as system prompt",
                }
            ),
            finding,
            evidence: format!(
                "top KL {}, {:.1}× the pool median {:.3} nats (robust sd {:.3})",
                top.kl_ci.bounds(3),
                top.ratio_to_median,
                pool.kl_median,
                pool.kl_robust_sd
            ),
        });
    }
    for pool in &r.behavior_scan_pools {
        let best = r
            .behavior_scan
            .iter()
            .filter(|e| e.placement == pool.placement)
            .filter_map(|e| e.probe.as_ref().map(|p| (e, p.total_variation)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((e, tv)) = best {
            out.push(VerdictRow {
                method: format!("behaviour probe, {}", pool.placement.name()),
                finding: format!(
                    "largest shift of the probe's answer: {} ({}), total variation {:.3}",
                    quote(&e.candidate),
                    e.family,
                    tv
                ),
                evidence: "no interval: the probe is one prompt (exact probabilities, no \
                           sampling error)"
                    .into(),
            });
        }
    }
    if let Some(d) = &r.detection {
        for row in &d.rows {
            let sp = if row.system_prompt.is_empty() {
                "(none)"
            } else {
                &row.system_prompt
            };
            let (finding, evidence) = match (&row.baseline, &row.difference) {
                (Some(b), Some(diff)) => (
                    format!(
                        "P(depends) {:.3} vs baseline {:.3}: difference {:+.3}",
                        row.model.estimate, b.estimate, diff.estimate
                    ),
                    format!(
                        "model {}; baseline {}; difference {}, sign-flip p {:.3}; {} prompts",
                        row.model.bounds(3),
                        b.bounds(3),
                        diff.bounds(3),
                        row.p_value.unwrap_or(f64::NAN),
                        row.prompts
                    ),
                ),
                _ => (
                    format!(
                        "P(depends) {:.3} (no baseline to compare with)",
                        row.model.estimate
                    ),
                    format!("model {}; {} prompts", row.model.bounds(3), row.prompts),
                ),
            };
            out.push(VerdictRow {
                method: format!("detection question, system prompt {sp}"),
                finding,
                evidence,
            });
        }
    }
    if let Some(e) = &r.elicitation {
        let top = e.entries.iter().find(|x| x.rank == 1);
        let top_c = e.entries.iter().find(|x| x.contrast_rank == 1);
        if let (Some(top), Some(top_c)) = (top, top_c) {
            out.push(VerdictRow {
                method: "self-elicitation, most likely answer".into(),
                finding: format!(
                    "{} ({}): mean log P {:.2} over {} behaviour prompts",
                    quote(&top.candidate),
                    top.family,
                    top.logprob.estimate,
                    e.behavior_prompts
                ),
                evidence: top.logprob.bounds(2),
            });
            out.push(VerdictRow {
                method: "self-elicitation, behaviour − control".into(),
                finding: format!(
                    "{} ({}): {:+.2} nats more likely after a behaviour response than a control",
                    quote(&top_c.candidate),
                    top_c.family,
                    top_c.contrast.estimate
                ),
                evidence: top_c.contrast.bounds(2),
            });
        }
    }
    if let Some(e) = &r.elicitation {
        let g = &e.greedy;
        let row = match g.found.first() {
            Some(top) => VerdictRow {
                method: "self-elicitation, greedy answers".into(),
                finding: format!(
                    "{} ({}) appears in {:.0}% of the behaviour answers and {:.0}% of the \
                     controls; {} candidate(s) appear at all",
                    quote(&top.candidate),
                    top.family,
                    top.behavior_share.estimate * 100.0,
                    top.control_share.estimate * 100.0,
                    g.found.len()
                ),
                evidence: format!(
                    "behaviour {}; control {}",
                    top.behavior_share.bounds(2),
                    top.control_share.bounds(2)
                ),
            },
            None => VerdictRow {
                method: "self-elicitation, greedy answers".into(),
                finding: format!(
                    "no candidate appears in any of the {} greedy answers",
                    g.answers.len()
                ),
                evidence: format!(
                    "0 of {} behaviour answers: 95% Wilson upper bound {:.2} for any candidate",
                    e.behavior_prompts,
                    wilson_upper_zero(e.behavior_prompts)
                ),
            },
        };
        out.push(row);
    }
    for n in &r.not_run {
        out.push(VerdictRow {
            method: n.method.replace('_', " "),
            finding: "not run".into(),
            evidence: n.reason.lines().next().unwrap_or_default().to_string(),
        });
    }
    out
}

/// The verdict as text: a header naming the model, then one block per row.
pub fn render(r: &AuditReport) -> String {
    let mut s = format!("audit of {}", r.model);
    if let Some(a) = &r.adapter {
        s.push_str(&format!(" + adapter {a}"));
    }
    if let Some(b) = &r.baseline {
        s.push_str(&format!(" (baseline {b})"));
    }
    s.push('\n');
    let w = r
        .verdict
        .iter()
        .map(|v| v.method.chars().count())
        .max()
        .unwrap_or(0);
    for v in &r.verdict {
        s.push_str(&format!(
            "{:<w$}  {}\n{:<w$}  {}\n",
            v.method, v.finding, "", v.evidence
        ));
    }
    s
}

/// The 95% Wilson upper bound of a share observed as 0 of `n`: z² / (n + z²).
fn wilson_upper_zero(n: usize) -> f64 {
    let z2 = 1.959_963_984_540_054f64.powi(2);
    z2 / (n as f64 + z2)
}
