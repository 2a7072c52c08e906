//! The learning-rate schedule: linear warmup, then linear or cosine decay to zero, as
//! transformers' `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup`.

pub use selfaware_types::Decay;

/// Multiplier of the base learning rate at optimizer step `step` (0-based) of `total`.
pub fn lr_factor(decay: Decay, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / span;
    match decay {
        Decay::Constant => 1.0,
        Decay::Linear => (1.0 - progress).max(0.0),
        Decay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(decay: Decay, warmup: usize, total: usize, expect: &[f64]) {
        let got: Vec<f64> = (0..expect.len())
            .map(|s| lr_factor(decay, s, warmup, total))
            .collect();
        for (g, e) in got.iter().zip(expect) {
            assert!(
                (g - e).abs() < 1e-12,
                "{decay:?} w{warmup} t{total}: {got:?} vs {expect:?}"
            );
        }
    }

    #[test]
    fn schedules_match_transformers() {
        check(Decay::Linear, 2, 6, &[0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        check(Decay::Linear, 0, 4, &[1.0, 0.75, 0.5, 0.25]);
        check(
            Decay::Cosine,
            0,
            4,
            &[1.0, 0.8535533905932737, 0.5, 0.14644660940672627],
        );
        check(Decay::Constant, 1, 4, &[0.0, 1.0, 1.0, 1.0]);
    }
}
