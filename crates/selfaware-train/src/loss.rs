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
    // [N, V]
    let logp = ops::log_softmax(&model.logits(&sel)?)?;
    // [N, 1]
    let picked = logp.gather(&batch.targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    Ok(picked.sum_all()?.neg()?)
}
