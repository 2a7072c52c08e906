//! Seeded, length-bucketed batches and their tensors.
//!
//! Each epoch shuffles the examples with a seed derived from `(seed, epoch)`, sorts windows of
//! 16 batches by length so the sequences of a batch have similar lengths (little padding), cuts
//! them into batches and shuffles the batch order. Batches are right-padded, so with the causal
//! mask no real token ever attends to padding.

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfaware_model::llama::{build_mask, u32_matrix, Step};

use crate::data::Example;
use crate::error::Result;

/// Batches per length-sorting window.
const BUCKET_WINDOW: usize = 16;

/// A seed for `(seed, stream, index)`, so every random stream (shuffles, dropout) can be
/// recreated from the step it belongs to (this is what makes resuming exact).
pub fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    // splitmix64 over the three words
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random streams, for [`derive_seed`].
pub const STREAM_SHUFFLE: u64 = 1;
pub const STREAM_DROPOUT: u64 = 2;

/// The batches (lists of example indices) of one epoch.
pub fn plan_epoch(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_SHUFFLE, epoch as u64));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let bs = batch_size.max(1);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(bs));
    for window in order.chunks(bs * BUCKET_WINDOW) {
        let mut w = window.to_vec();
        // Stable sort: equal lengths keep their shuffled order.
        w.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(w.chunks(bs).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// The tensors of one batch.
pub struct Batch {
    /// `[B, T]` u32
    pub tokens: Tensor,
    /// `[B, T]` u32
    pub positions: Tensor,
    /// `[1, 1, T, T]` causal mask
    pub mask: Tensor,
    /// Flat indices `b·T + t` of the positions whose next token is trained.
    pub select: Tensor,
    /// The trained next tokens, aligned with `select`.
    pub targets: Tensor,
    pub n_trained: usize,
    /// Real (unpadded) tokens.
    pub n_tokens: usize,
}

impl Batch {
    /// Builds the batch of `examples`, right-padded with `pad`.
    pub fn new(examples: &[&Example], pad: u32) -> Result<Self> {
        let t = examples.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut rows = Vec::with_capacity(examples.len());
        let mut select = Vec::new();
        let mut targets = Vec::new();
        for (b, e) in examples.iter().enumerate() {
            let mut row = e.ids.clone();
            row.resize(t, pad);
            rows.push(row);
            for p in 1..e.len() {
                if e.trained[p] {
                    select.push((b * t + p - 1) as u32);
                    targets.push(e.ids[p]);
                }
            }
        }
        let positions: Vec<Vec<u32>> = (0..examples.len())
            .map(|_| (0..t as u32).collect())
            .collect();
        let n = select.len();
        Ok(Batch {
            tokens: u32_matrix(&rows)?,
            positions: u32_matrix(&positions)?,
            mask: build_mask(1, t, t, |_, q, k| k <= q)?,
            select: Tensor::from_vec(select, n, &candle_core::Device::Cpu)?,
            targets: Tensor::from_vec(targets, n, &candle_core::Device::Cpu)?,
            n_trained: n,
            n_tokens: examples.iter().map(|e| e.len()).sum(),
        })
    }

    pub fn step(&self) -> Step<'_> {
        Step {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: &self.mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_example_once_with_little_padding() {
        let lengths: Vec<usize> = (0..100).map(|i| 10 + (i * 37) % 50).collect();
        let plan = plan_epoch(&lengths, 8, 7, 0);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(plan.len(), 13);
        let padded: usize = plan
            .iter()
            .map(|b| b.iter().map(|&i| lengths[i]).max().unwrap() * b.len())
            .sum();
        let real: usize = lengths.iter().sum();
        assert!(padded < real * 11 / 10, "padding {padded} vs {real}");
        assert_eq!(plan, plan_epoch(&lengths, 8, 7, 0));
        assert_ne!(plan, plan_epoch(&lengths, 8, 7, 1));
        assert_ne!(plan, plan_epoch(&lengths, 8, 8, 0));
    }

    #[test]
    fn batch_selects_positions_before_trained_tokens() {
        let e1 = Example {
            line: 1,
            ids: vec![5, 6, 7, 8],
            trained: vec![false, false, true, true],
        };
        let e2 = Example {
            line: 2,
            ids: vec![1, 2, 3],
            trained: vec![false, true, false],
        };
        let b = Batch::new(&[&e1, &e2], 0).unwrap();
        assert_eq!(
            b.tokens.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7, 8], vec![1, 2, 3, 0]]
        );
        assert_eq!(b.select.to_vec1::<u32>().unwrap(), vec![1, 2, 4]);
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![7, 8, 2]);
        assert_eq!(b.n_tokens, 7);
    }
}
