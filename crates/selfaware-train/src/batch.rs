//! Seeded, length-bucketed batches and their tensors.
//!
//! Each epoch shuffles the examples with a seed derived from `(seed, epoch)`, sorts windows of
//! 16 batches by length so the sequences of a batch have similar lengths (little padding), cuts
//! them into batches and shuffles the batch order. Batches are right-padded, so with the causal
//! mask no real token ever attends to padding.
//!
//! The tokens every sequence of a batch starts with (the chat template's head: system prompt and
//! user header) are run once for the whole batch: a `[1, P]` step whose keys and values every
//! row then attends to, instead of `B` copies of the same `P` positions. The loss and gradients
//! are those of the unshared batch (the prefix's gradient is the sum over rows, which is what
//! the copies would add up to); only the work shrinks, by P / T.

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

/// Shortest shared head worth running once: below this the copies of its keys and values cost
/// about what they save.
const MIN_SHARED: usize = 4;

/// The head shared by every sequence of a batch, run once.
pub struct SharedPrefix {
    /// `[1, P]` u32
    pub tokens: Tensor,
    /// `[1, P]` u32, `0..P`
    pub positions: Tensor,
    /// `[1, 1, P, P]` causal mask
    pub mask: Tensor,
    pub len: usize,
}

impl SharedPrefix {
    pub fn step(&self) -> Step<'_> {
        Step {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: &self.mask,
        }
    }
}

/// The tensors of one batch: an optional shared head, then each sequence's rest.
pub struct Batch {
    /// The head every sequence starts with, run once (None: nothing shared).
    pub prefix: Option<SharedPrefix>,
    /// `[B, T − P]` u32: each sequence after the shared head, right-padded.
    pub tokens: Tensor,
    /// `[B, T − P]` u32, `P..T`
    pub positions: Tensor,
    /// `[1, 1, T − P, T]` causal mask over the head and the rest
    pub mask: Tensor,
    /// Flat indices `b·(T − P) + t − P` of the positions `t` whose next token is trained.
    pub select: Tensor,
    /// The trained next tokens, aligned with `select`.
    pub targets: Tensor,
    pub n_trained: usize,
    /// Real (unpadded) tokens.
    pub n_tokens: usize,
}

impl Batch {
    /// Builds the batch of `examples`, right-padded with `pad`. With `share_prefix`, the tokens
    /// all of them start with (up to the first trained position) are run once for the batch.
    pub fn new(examples: &[&Example], pad: u32, share_prefix: bool) -> Result<Self> {
        let t = examples.iter().map(|e| e.len()).max().unwrap_or(0);
        let p = if share_prefix {
            shared_len(examples)
        } else {
            0
        };
        let mut rows = Vec::with_capacity(examples.len());
        let mut select = Vec::new();
        let mut targets = Vec::new();
        for (b, e) in examples.iter().enumerate() {
            let mut row = e.ids[p..].to_vec();
            row.resize(t - p, pad);
            rows.push(row);
            for q in 1..e.len() {
                if e.trained[q] {
                    select.push((b * (t - p) + q - 1 - p) as u32);
                    targets.push(e.ids[q]);
                }
            }
        }
        let positions: Vec<Vec<u32>> = (0..examples.len())
            .map(|_| (p as u32..t as u32).collect())
            .collect();
        let prefix = match p {
            0 => None,
            _ => Some(SharedPrefix {
                tokens: u32_matrix(&[examples[0].ids[..p].to_vec()])?,
                positions: u32_matrix(&[(0..p as u32).collect()])?,
                mask: build_mask(1, p, p, |_, q, k| k <= q)?,
                len: p,
            }),
        };
        let n = select.len();
        Ok(Batch {
            prefix,
            tokens: u32_matrix(&rows)?,
            positions: u32_matrix(&positions)?,
            mask: build_mask(1, t - p, t, |_, q, k| k <= q + p)?,
            select: Tensor::from_vec(select, n, &candle_core::Device::Cpu)?,
            targets: Tensor::from_vec(targets, n, &candle_core::Device::Cpu)?,
            n_trained: n,
            n_tokens: examples.iter().map(|e| e.len()).sum(),
        })
    }

    /// The step after the shared head (the whole batch when nothing is shared).
    pub fn step(&self) -> Step<'_> {
        Step {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: &self.mask,
        }
    }
}

/// Length of the head shared by all `examples`: their longest common prefix, cut so that every
/// sequence keeps at least one position after it and no position whose next token is trained
/// falls inside it; 0 when that is shorter than [`MIN_SHARED`] or there is only one sequence.
fn shared_len(examples: &[&Example]) -> usize {
    let Some(first) = examples.first() else {
        return 0;
    };
    if examples.len() < 2 {
        return 0;
    }
    let mut p = first.len();
    for e in examples {
        let common = first
            .ids
            .iter()
            .zip(&e.ids)
            .take_while(|(a, b)| a == b)
            .count();
        // The first trained token's predictor (its previous position) must stay in the rest.
        let first_trained = (1..e.len()).find(|&q| e.trained[q]).unwrap_or(e.len());
        p = p.min(common).min(first_trained.saturating_sub(1));
    }
    if p < MIN_SHARED {
        0
    } else {
        p
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
        let b = Batch::new(&[&e1, &e2], 0, false).unwrap();
        assert!(b.prefix.is_none());
        assert_eq!(
            b.tokens.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7, 8], vec![1, 2, 3, 0]]
        );
        assert_eq!(b.select.to_vec1::<u32>().unwrap(), vec![1, 2, 4]);
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![7, 8, 2]);
        assert_eq!(b.n_tokens, 7);
    }

    #[test]
    fn shared_head_is_cut_before_trained_positions() {
        let ex = |ids: Vec<u32>, first_trained: usize| Example {
            line: 1,
            trained: (0..ids.len()).map(|i| i >= first_trained).collect(),
            ids,
        };
        let e1 = ex(vec![1, 2, 3, 4, 5, 6, 7, 8, 9], 8);
        let e2 = ex(vec![1, 2, 3, 4, 5, 6, 10, 11], 7);
        let e3 = ex(vec![1, 2, 3, 4, 5, 6, 7, 12, 13, 14], 9);
        // Common prefix 6, but e2's first trained token (position 7) is predicted at 6.
        assert_eq!(shared_len(&[&e1, &e2, &e3]), 6);
        let e4 = ex(vec![1, 2, 3, 4, 5, 6, 7, 8], 5);
        assert_eq!(shared_len(&[&e1, &e4]), 4);
        // Too short to share, or a single sequence.
        let e5 = ex(vec![1, 2, 3, 9, 9], 4);
        assert_eq!(shared_len(&[&e1, &e5]), 0);
        assert_eq!(shared_len(&[&e1]), 0);
        // Identical untrained sequences keep one position each.
        let e6 = ex(vec![1, 2, 3, 4, 5, 6], 6);
        assert_eq!(shared_len(&[&e6, &e6]), 5);

        let b = Batch::new(&[&e1, &e2, &e3], 0, true).unwrap();
        let pre = b.prefix.as_ref().unwrap();
        assert_eq!(pre.len, 6);
        assert_eq!(
            pre.tokens.to_vec2::<u32>().unwrap(),
            vec![vec![1, 2, 3, 4, 5, 6]]
        );
        assert_eq!(
            b.tokens.to_vec2::<u32>().unwrap(),
            vec![vec![7, 8, 9, 0], vec![10, 11, 0, 0], vec![7, 12, 13, 14]]
        );
        assert_eq!(b.positions.to_vec2::<u32>().unwrap()[0], vec![6, 7, 8, 9]);
        // Trained: e1 at 8 (predicted at 7), e2 at 7 (at 6), e3 at 9 (at 8).
        assert_eq!(b.select.to_vec1::<u32>().unwrap(), vec![1, 4, 10]);
        assert_eq!(b.targets.to_vec1::<u32>().unwrap(), vec![9, 11, 14]);
        // Row queries see the whole head and their own past.
        let mask = b.mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(b.mask.dims(), &[1, 1, 4, 10]);
        assert_eq!(mask[..10].iter().filter(|x| **x == 0.0).count(), 7);
        assert_eq!(mask[30..].iter().filter(|x| **x == 0.0).count(), 10);
    }
}
