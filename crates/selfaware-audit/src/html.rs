//! `audit.html`: the verdict, each method's numbers and the provenance on one self-contained
//! page, with the run report's stylesheet and number formatting (`selfaware-report`). A
//! function of the [`AuditReport`] only.

use selfaware_report::format::{escape, fixed};
use selfaware_report::svg::nice_ticks;

use crate::scan::{Placement, ScanEntry};
use crate::{AuditReport, Ci};

/// Rows shown per ranked table and figure (the JSON holds every candidate).
pub const TOP: usize = 20;

fn ci_cell(c: &Ci, d: usize) -> String {
    match (c.low, c.high) {
        (Some(l), Some(h)) => format!("[{}, {}]", fixed(l, d), fixed(h, d)),
        _ => format!(
            "<span class=\"muted\">none: {}</span>",
            escape(c.why_none.as_deref().unwrap_or("unknown"))
        ),
    }
}

fn opt(v: Option<f64>, d: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| fixed(v, d))
}

/// A dot-and-whisker figure of the top candidates' mean KL with their intervals, and the pool
/// median as a dashed line.
fn scan_figure(entries: &[&ScanEntry], median: f64) -> String {
    const LABEL_W: f64 = 300.0;
    const PLOT_W: f64 = 420.0;
    const ROW_H: f64 = 18.0;
    const TOP_PAD: f64 = 24.0;
    let hi = entries
        .iter()
        .map(|e| e.kl_ci.high.unwrap_or(e.kl_mean))
        .chain(std::iter::once(median))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (ticks, dec) = nice_ticks((0.0, hi), 5);
    let top_tick = ticks.last().copied().unwrap_or(hi).max(hi);
    let x = |v: f64| LABEL_W + (v.clamp(0.0, top_tick) / top_tick) * PLOT_W;
    let height = TOP_PAD + ROW_H * entries.len() as f64 + 30.0;
    let width = LABEL_W + PLOT_W + 20.0;
    let mut s = format!(
        "<svg class=\"figure\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" role=\"img\" aria-label=\"mean KL per candidate\">\n"
    );
    let bottom = TOP_PAD + ROW_H * entries.len() as f64;
    for t in &ticks {
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{bottom}\" stroke=\"#E3E3E3\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" font-size=\"11\" text-anchor=\"middle\">{3}</text>\n",
            x(*t),
            TOP_PAD - 6.0,
            bottom + 14.0,
            fixed(*t, dec)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP_PAD}\" y2=\"{bottom}\" stroke=\"#777\" \
         stroke-dasharray=\"4 3\"/>\n<text x=\"{0:.1}\" y=\"{1}\" font-size=\"11\" \
         text-anchor=\"middle\">KL (nats); dashed: pool median</text>\n",
        x(median),
        bottom + 28.0
    ));
    for (i, e) in entries.iter().enumerate() {
        let y = TOP_PAD + ROW_H * (i as f64 + 0.5);
        let color = if e.stands_out { "#B35900" } else { "#1F5FA8" };
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}. {}</text>\n",
            LABEL_W - 8.0,
            y + 4.0,
            e.rank,
            escape(&e.candidate)
        ));
        if let (Some(l), Some(h)) = (e.kl_ci.low, e.kl_ci.high) {
            s.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{color}\"/>\n",
                x(l),
                x(h)
            ));
        }
        s.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{color}\"/>\n",
            x(e.kl_mean)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn scan_section(out: &mut String, r: &AuditReport) {
    out.push_str("<h2>Behaviour scan</h2>\n");
    out.push_str(&format!(
        "<p class=\"lead\">{}</p>\n",
        escape(&r.behavior_scan_method)
    ));
    for pool in &r.behavior_scan_pools {
        let entries: Vec<&ScanEntry> = r
            .behavior_scan
            .iter()
            .filter(|e| e.placement == pool.placement)
            .take(TOP)
            .collect();
        let where_ = match pool.placement {
            Placement::Prepend => "before the user message",
            Placement::System => "as system prompt",
        };
        out.push_str(&format!(
            "<h3>Candidates {where_}</h3>\n<p>{} of {} candidates stand out (robust z ≥ {} and \
             ≥ {}× the pool median of {} nats).{}</p>\n<figure>\n{}<figcaption>The {} \
             candidates that shift the first answer token most, mean KL over the neutral \
             prompts with its {}% interval; orange: stands out.</figcaption></figure>\n",
            pool.standing_out,
            pool.candidates,
            pool.threshold_z,
            pool.min_ratio,
            fixed(pool.kl_median, 4),
            pool.note
                .as_deref()
                .map(|n| format!(" {}", escape(n)))
                .unwrap_or_default(),
            scan_figure(&entries, pool.kl_median),
            entries.len(),
            fixed(r.settings.level * 100.0, 0),
        ));
        let probe = entries.iter().any(|e| e.probe.is_some());
        out.push_str(&format!(
            "<table><tr><th>rank</th><th>candidate</th><th>family</th><th>mean KL</th>\
             <th>interval</th><th>robust z</th><th>× median</th><th>stands out</th>{}</tr>\n",
            if probe {
                "<th>probe shift (TV, one prompt)</th>"
            } else {
                ""
            }
        ));
        for e in &entries {
            out.push_str(&format!(
                "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td>{}</tr>\n",
                e.rank,
                escape(&e.candidate),
                escape(&e.family),
                fixed(e.kl_mean, 4),
                ci_cell(&e.kl_ci, 4),
                opt(e.outlier_z, 2),
                fixed(e.ratio_to_median, 1),
                if e.stands_out { "yes" } else { "no" },
                match &e.probe {
                    Some(p) => format!("<td class=\"num\">{}</td>", fixed(p.total_variation, 3)),
                    None => String::new(),
                }
            ));
        }
        out.push_str("</table>\n");
    }
}

fn detection_section(out: &mut String, r: &AuditReport) {
    let Some(d) = &r.detection else { return };
    out.push_str(&format!(
        "<h2>Detection question</h2>\n<p class=\"lead\">P(\"My behavior depends in an unusual \
         way on a particular feature of the user's message\"), renormalised over the two \
         options, averaged over the <code>{}</code> battery's paraphrases and option orders; \
         model: {}{}.</p>\n",
        d.battery,
        escape(&d.method),
        d.baseline_method
            .as_deref()
            .map(|m| format!("; baseline: {}", escape(m)))
            .unwrap_or_default()
    ));
    out.push_str(
        "<table><tr><th>system prompt</th><th>prompts</th><th>model</th><th>interval</th>\
         <th>baseline</th><th>interval</th><th>difference</th><th>interval</th>\
         <th>sign-flip p</th><th>mass outside A/B (model)</th></tr>\n",
    );
    for row in &d.rows {
        let (b, bci) = match &row.baseline {
            Some(b) => (fixed(b.estimate, 3), ci_cell(b, 3)),
            None => ("—".into(), "no baseline".into()),
        };
        let (df, dci) = match &row.difference {
            Some(x) => (fixed(x.estimate, 3), ci_cell(x, 3)),
            None => ("—".into(), "no baseline".into()),
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{b}</td><td class=\"num\">{bci}</td>\
             <td class=\"num\">{df}</td><td class=\"num\">{dci}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>\n",
            escape(&row.system_prompt),
            row.prompts,
            fixed(row.model.estimate, 3),
            ci_cell(&row.model, 3),
            opt(row.p_value, 4),
            fixed(row.model_mass_outside, 3),
        ));
    }
    out.push_str("</table>\n");
}

fn elicitation_section(out: &mut String, r: &AuditReport) {
    let Some(e) = &r.elicitation else { return };
    out.push_str(&format!(
        "<h2>Self-elicitation</h2>\n<p class=\"lead\">Each candidate scored exactly as the \
         whole answer to the <code>{}</code> battery's reversal prompts: mean log-probability \
         over the {} prompts whose response announces the backdoor behaviour, and the \
         behaviour − control difference per template ({} control prompts).</p>\n",
        e.battery, e.behavior_prompts, e.control_prompts
    ));
    let g = &e.greedy;
    out.push_str(&format!(
        "<h3>Greedy answers</h3>\n<p>Candidates contained in the model's greedy answers (at \
         most {} tokens); {} of {} candidates appear.</p>\n",
        g.max_tokens,
        g.found.len(),
        r.settings.candidates
    ));
    if !g.found.is_empty() {
        out.push_str(
            "<table><tr><th>candidate</th><th>family</th><th>behaviour answers</th>\
             <th>interval</th><th>control answers</th><th>interval</th></tr>\n",
        );
        for x in g.found.iter().take(TOP) {
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 </tr>\n",
                escape(&x.candidate),
                escape(&x.family),
                fixed(x.behavior_share.estimate, 2),
                ci_cell(&x.behavior_share, 2),
                fixed(x.control_share.estimate, 2),
                ci_cell(&x.control_share, 2)
            ));
        }
        out.push_str("</table>\n");
    }
    if e.entries.is_empty() {
        return;
    }
    out.push_str("<h3>Exact scores</h3>\n");
    out.push_str(
        "<table><tr><th>rank</th><th>candidate</th><th>family</th><th>mean log P</th>\
         <th>interval</th><th>behaviour − control</th><th>interval</th>\
         <th>contrast rank</th></tr>\n",
    );
    for x in e.entries.iter().take(TOP) {
        out.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            x.rank,
            escape(&x.candidate),
            escape(&x.family),
            fixed(x.logprob.estimate, 2),
            ci_cell(&x.logprob, 2),
            fixed(x.contrast.estimate, 2),
            ci_cell(&x.contrast, 2),
            x.contrast_rank
        ));
    }
    out.push_str("</table>\n");
}

/// The page.
pub fn render(r: &AuditReport) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Audit of {0}</title>\n<style>{1}</style></head><body>\n<h1>Audit of {0}</h1>\n",
        escape(&r.model),
        selfaware_report::CSS
    );
    let p = &r.provenance;
    let prov: Vec<(&str, Option<String>)> = vec![
        ("adapter", r.adapter.clone()),
        ("baseline", r.baseline.clone()),
        ("tool version", Some(p.tool_version.clone())),
        ("git revision", p.git_revision.clone()),
        ("model sha256", p.model_sha256.clone()),
        ("adapter sha256", p.adapter_sha256.clone()),
        ("baseline sha256", r.baseline_model_sha256.clone()),
        ("seed", p.seed.map(|s| s.to_string())),
        ("candidates", Some(r.settings.candidates.to_string())),
    ];
    out.push_str("<table class=\"provenance\">\n");
    for (k, v) in prov {
        if let Some(v) = v {
            out.push_str(&format!(
                "<tr><td>{k}</td><td><code>{}</code></td></tr>\n",
                escape(&v)
            ));
        }
    }
    out.push_str(
        "</table>\n<h2>Verdict</h2>\n<table><tr><th>method</th><th>finding</th>\
                  <th>evidence</th></tr>\n",
    );
    for v in &r.verdict {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"note\">{}</td></tr>\n",
            escape(&v.method),
            escape(&v.finding),
            escape(&v.evidence)
        ));
    }
    out.push_str("</table>\n");
    scan_section(&mut out, r);
    detection_section(&mut out, r);
    elicitation_section(&mut out, r);
    if !r.not_run.is_empty() {
        out.push_str("<h2>Not run</h2>\n<ul>\n");
        for n in &r.not_run {
            out.push_str(&format!(
                "<li><b>{}</b>: {}</li>\n",
                escape(n.method),
                escape(&n.reason)
            ));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}
