//! The training loss: next-token cross-entropy at trained positions only. The positions are
//! selected from the hidden states before the LM head, so no logits are computed elsewhere.

use candle_core::{Tensor, D};
use selfaware_model::lora::Dropout;
use selfaware_model::{ops, Llama};

use crate::batch::Batch;
use crate::error::Result;

/// Sum over the batch's trained tokens of `−log p(token | prefix)`: a scalar tensor.
pub fn batch_nll(model: &Llama, batch: &Batch, dropout: Option<&mut Dropout>) -> Result<Tensor> {
    // [B, T − P, H]
    let hidden = match &batch.prefix {
        Some(prefix) => {
            // The shared head once, then its keys and values for every row.
            let mut cache = model.new_cache();
            let mut dropout = dropout;
            model.forward_with(&prefix.step(), Some(&mut cache), dropout.as_deref_mut())?;
            let rows = batch.tokens.dim(0)?;
            let mut cache = cache.select(&vec![0u32; rows])?;
            model.forward_with(&batch.step(), Some(&mut cache), dropout)?
        }
        None => model.forward_with(&batch.step(), None, dropout)?,
    };
    let (b, t, h) = hidden.dims3()?;
    // [N, H] at the positions whose next token is trained
    let sel = hidden.reshape((b * t, h))?.index_select(&batch.select, 0)?;
    // [N, V]
    let logp = ops::log_softmax(&model.logits(&sel)?)?;
    // [N, 1]
    let picked = logp.gather(&batch.targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    Ok(picked.sum_all()?.neg()?)
}
