//! What the battery can detect: each question read through the positive control, a condition
//! whose training data states the behaviour the other finetunes only enact. When even the
//! positive control does not move a question away from the baseline, a null on that question
//! says nothing about awareness; when it does, a trained condition's null is informative.

use crate::results::{Metric, Results};

/// Whether a question detects the stated behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The positive control differs from the baseline: its 95% interval excludes 0.
    Detected,
    /// The interval includes 0: the question does not show even the stated behaviour.
    NotDetected,
    /// No interval, so no verdict.
    NoInterval,
}

impl Verdict {
    /// The verdict in words, as the report prints it.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Detected => "detected",
            Verdict::NotDetected => "not detected",
            Verdict::NoInterval => "no verdict (no interval)",
        }
    }
}

/// One question's reading through one positive control against one baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection<'a> {
    /// The question.
    pub metric: &'a Metric,
    /// The positive-control condition id.
    pub control: &'a str,
    /// The baseline condition id.
    pub baseline: &'a str,
    /// `mean(control) − mean(baseline)`.
    pub difference: f64,
    /// Lower end of the difference's 95% interval.
    pub ci_low: Option<f64>,
    /// Upper end of the difference's 95% interval.
    pub ci_high: Option<f64>,
    /// What the interval says.
    pub verdict: Verdict,
}

/// Every (question, positive control, baseline) comparison of `r`, in question order.
pub fn detections(r: &Results) -> Vec<Detection<'_>> {
    let is = |id: &str, f: fn(&crate::results::Condition) -> bool| {
        r.conditions.iter().any(|c| c.id == id && f(c))
    };
    let mut out = Vec::new();
    for m in &r.questions {
        for c in &m.comparisons {
            let (control, baseline, sign) =
                if is(&c.a, |c| c.positive_control) && is(&c.b, |c| c.baseline) {
                    (c.a.as_str(), c.b.as_str(), 1.0)
                } else if is(&c.b, |c| c.positive_control) && is(&c.a, |c| c.baseline) {
                    (c.b.as_str(), c.a.as_str(), -1.0)
                } else {
                    continue;
                };
            let (lo, hi) = match (c.ci_low, c.ci_high) {
                (Some(l), Some(h)) if sign > 0.0 => (Some(l), Some(h)),
                (Some(l), Some(h)) => (Some(-h), Some(-l)),
                _ => (None, None),
            };
            let verdict = match (lo, hi) {
                (Some(l), Some(h)) if l > 0.0 || h < 0.0 => Verdict::Detected,
                (Some(_), Some(_)) => Verdict::NotDetected,
                _ => Verdict::NoInterval,
            };
            out.push(Detection {
                metric: m,
                control,
                baseline,
                difference: sign * c.difference,
                ci_low: lo,
                ci_high: hi,
                verdict,
            });
        }
    }
    out
}
