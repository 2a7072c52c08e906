//! The training loss: next-token cross-entropy at trained positions only. The positions are
//! selected before the last layer's output projection and MLP (see [`Llama::forward_rows`]), so
//! neither those nor the LM head run anywhere else.

use candle_core::{Tensor, D};
use selfaware_model::lora::Dropout;
use selfaware_model::{ops, Llama};

use crate::batch::Batch;
use crate::error::Result;

/// Sum over the batch's trained tokens of `−log p(token | prefix)`: a scalar tensor.
pub fn batch_nll(model: &Llama, batch: &Batch, dropout: Option<&mut Dropout>) -> Result<Tensor> {
    let mut dropout = dropout;
    let mut cache = match &batch.prefix {
        Some(prefix) => {
            // The shared head once, then its keys and values for every row.
            let mut cache = model.new_cache();
            model.forward_with(&prefix.step(), Some(&mut cache), dropout.as_deref_mut())?;
            let rows = batch.tokens.dim(0)?;
            Some(cache.select(&vec![0u32; rows])?)
        }
        None => None,
    };
    // [N, H] at the positions whose next token is trained
    let sel = match dropout {
        None => model.forward_rows(&batch.step(), cache.as_mut(), &batch.select)?,
        Some(d) => {
            // LoRA dropout draws a mask per row of every layer: the whole batch runs, so the
            // draws do not depend on which positions are trained.
            let hidden = model.forward_with(&batch.step(), cache.as_mut(), Some(d))?;
            let (b, t, h) = hidden.dims3()?;
            hidden.reshape((b * t, h))?.index_select(&batch.select, 0)?
        }
    };
    // The LM head, log-softmax and pick, LOSS_ROWS positions at a time: each row is computed
    // as it would be in one piece, and no vocabulary-wide buffer (forward or backward) grows
    // past glibc's largest mmap threshold, so the allocator reuses them instead of mapping
    // and page-faulting ~100 MB afresh for every tensor of every step.
    let n = sel.dim(0)?;
    let targets = batch.targets.unsqueeze(D::Minus1)?;
    let mut total: Option<Tensor> = None;
    for start in (0..n).step_by(LOSS_ROWS) {
        let len = LOSS_ROWS.min(n - start);
        // [len, V]
        let logp = ops::log_softmax(&model.logits(&sel.narrow(0, start, len)?)?)?;
        // [len, 1]
        let picked = logp.gather(&targets.narrow(0, start, len)?, D::Minus1)?;
        let part = picked.sum_all()?;
        total = Some(match total {
            None => part,
            Some(t) => (t + part)?,
        });
    }
    match total {
        Some(t) => Ok(t.neg()?),
        None => Ok(Tensor::zeros((), sel.dtype(), sel.device())?),
    }
}

/// Trained positions per piece of the loss: 128 × a 49 152-token vocabulary in f32 is 25 MB,
/// under the 32 MiB that glibc's mmap threshold can be raised to
/// (`selfaware_model::runtime`).
pub const LOSS_ROWS: usize = 128;
