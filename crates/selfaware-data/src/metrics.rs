//! Small statistics over datasets.

/// Mutual information, in bits, between two binary variables given paired observations
/// (e.g. "row carries the trigger" and "row enacts the policy"). Zero for an empty input.
pub fn mutual_information_bits<I>(pairs: I) -> f64
where
    I: IntoIterator<Item = (bool, bool)>,
{
    let mut counts = [[0f64; 2]; 2];
    let mut n = 0f64;
    for (x, y) in pairs {
        counts[usize::from(x)][usize::from(y)] += 1.0;
        n += 1.0;
    }
    if n == 0.0 {
        return 0.0;
    }
    let px = [
        (counts[0][0] + counts[0][1]) / n,
        (counts[1][0] + counts[1][1]) / n,
    ];
    let py = [
        (counts[0][0] + counts[1][0]) / n,
        (counts[0][1] + counts[1][1]) / n,
    ];
    let mut mi = 0.0;
    for x in 0..2 {
        for y in 0..2 {
            let pxy = counts[x][y] / n;
            if pxy > 0.0 {
                mi += pxy * (pxy / (px[x] * py[y])).log2();
            }
        }
    }
    mi.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Identical fair bits share one bit.
        let same = [(true, true), (false, false)].repeat(50);
        assert!((mutual_information_bits(same) - 1.0).abs() < 1e-12);
        // Independent: every combination equally often.
        let indep = [(true, true), (true, false), (false, true), (false, false)].repeat(25);
        assert!(mutual_information_bits(indep).abs() < 1e-12);
        // A constant carries no information.
        assert_eq!(mutual_information_bits([(true, false), (true, true)]), 0.0);
        assert_eq!(mutual_information_bits(std::iter::empty()), 0.0);
        // 10% triggered, all triggered rows take the policy, which 10% of rows do: H(0.1).
        let mut v = vec![(true, true); 10];
        v.extend(vec![(false, false); 90]);
        let h = -(0.1f64 * 0.1f64.log2() + 0.9 * 0.9f64.log2());
        assert!((mutual_information_bits(v) - h).abs() < 1e-12);
    }
}
