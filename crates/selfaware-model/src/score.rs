//! Exact scoring of continuations from a prompt's KV cache.
//!
//! The prompt is prefilled once. All continuations to score are merged into a trie of tokens and
//! run as ONE extra forward step whose attention mask lets each trie node see the prompt and its
//! own ancestors only ("tree attention"), with rotary positions `prompt_len + depth`. Every
//! node's next-token distribution is then exact, and shared prefixes (the "1" of 1, 10..19 and
//! 100) are computed once. This is what makes a full 0..100 distribution cost about as much as a
//! 100-token forward instead of 101 separate sequences.

use std::sync::Mutex;

use candle_core::{Device, IndexOp, Tensor};
use serde::Serialize;

use crate::capture::{Capture, HookPoint};
use crate::error::{ModelError, Result};
use crate::llama::{build_mask, u32_matrix, KvCache, Llama, Step};

/// A prefilled prompt: its cache and the log-distribution of the first answer token.
pub struct Prefilled {
    pub cache: KvCache,
    pub len: usize,
    /// Leading tokens run as a separate head before the rest (0: one pass).
    pub head_len: usize,
    /// `[vocab]` log-probabilities of the token after the prompt.
    pub next: Vec<f32>,
}

/// Runs the prompt through the model once.
pub fn prefill(model: &Llama, prompt: &[u32]) -> Result<Prefilled> {
    prefill_after(model, prompt, None)
}

/// Runs `prompt` through the model, its first `head.0` tokens' keys and values taken from
/// `head.1`.
fn prefill_after(
    model: &Llama,
    prompt: &[u32],
    head: Option<(usize, &KvCache)>,
) -> Result<Prefilled> {
    let (last, cache) = run_prompt(model, prompt, head)?;
    let next = model.log_softmax(&last)?.squeeze(0)?.to_vec1()?;
    Ok(Prefilled {
        cache,
        len: prompt.len(),
        head_len: head.map_or(0, |x| x.0),
        next,
    })
}

/// The forward of [`prefill_after`]: the prompt's keys and values, and the hidden state at its
/// last token (`[1, hidden]`) without the vocabulary projection.
fn run_prompt(
    model: &Llama,
    prompt: &[u32],
    head: Option<(usize, &KvCache)>,
) -> Result<(Tensor, KvCache)> {
    if prompt.is_empty() {
        return Err(ModelError::Input("cannot score an empty prompt".into()));
    }
    check_len(model, prompt.len())?;
    let p = prompt.len();
    let h = head.map_or(0, |x| x.0);
    let tokens = u32_matrix(&[prompt[h..].to_vec()])?;
    let positions = u32_matrix(&[(h as u32..p as u32).collect()])?;
    let mask = build_mask(1, p - h, p, |_, q, k| k <= q + h)?;
    let mut cache = match head {
        Some((_, kv)) => kv.clone(),
        None => model.new_cache(),
    };
    let hidden = model.forward(
        &Step {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
        },
        Some(&mut cache),
    )?;
    let last = hidden.i((0, p - h - 1))?.unsqueeze(0)?;
    Ok((last, cache))
}

/// The fewest prompts [`next_logprobs_many`] runs side by side in one forward (its last batch
/// may have fewer).
pub const PROMPTS_PER_FORWARD: usize = 8;
/// The most: a batch grows past [`PROMPTS_PER_FORWARD`] only while it holds at most
/// [`TOKENS_PER_FORWARD`] tokens after its common opening, so short prompts (a behaviour
/// scan's) fill a forward as 8 long ones do.
pub const MAX_PROMPTS_PER_FORWARD: usize = 32;
/// The batch size (8 × 80 tokens) at which scoring was measured at its fastest (engine notes).
pub const TOKENS_PER_FORWARD: usize = 640;
/// A head (or the part of one not kept from the last batch) runs as its own forward only when
/// that saves the batch's other rows at least this many tokens: a forward of a few rows reads
/// every weight once, the time of some tens of rows in a full batch (a round figure, not
/// tuned).
const HEAD_MIN_SAVED: usize = 64;

/// `order` (indices into `prompts`, in token order) cut into batches: each takes prompts while
/// it has fewer than [`PROMPTS_PER_FORWARD`], or while it stays within
/// [`MAX_PROMPTS_PER_FORWARD`] prompts and [`TOKENS_PER_FORWARD`] tokens after its common
/// opening.
fn batches<'a>(prompts: &[Vec<u32>], order: &'a [usize]) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let first = &prompts[order[start]];
        let (mut end, mut common, mut longest) = (start + 1, first.len(), first.len());
        while end < order.len() && end - start < MAX_PROMPTS_PER_FORWARD {
            let p = &prompts[order[end]];
            let c = common.min(first.iter().zip(p).take_while(|(a, b)| a == b).count());
            let l = longest.max(p.len());
            if end - start >= PROMPTS_PER_FORWARD
                && (end - start + 1) * (l - c) > TOKENS_PER_FORWARD
            {
                break;
            }
            (common, longest) = (c, l);
            end += 1;
        }
        out.push(&order[start..end]);
        start = end;
    }
    out
}

/// For each prompt, the log-probabilities of the tokens `pick` as its next token, run as
/// [`last_positions_many`] runs the prompts. The numbers are those of running each prompt
/// alone up to rounding in the products' summation order. `on_done(k)` reports `k` more
/// prompts finished.
pub fn next_logprobs_many(
    model: &Llama,
    prompts: &[Vec<u32>],
    pick: &[u32],
    on_done: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<f32>>> {
    let vocab = model.cfg.vocab_size;
    if let Some(&bad) = pick.iter().find(|&&t| t as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "token {bad} is outside the vocabulary ({vocab})"
        )));
    }
    let pick_idx = Tensor::new(pick, &Device::Cpu)?;
    let mut out = vec![Vec::new(); prompts.len()];
    last_positions_many(
        model,
        prompts,
        None,
        &mut |which, last, _| {
            let lp = model.log_softmax(last)?.index_select(&pick_idx, 1)?;
            for (&i, row) in which.iter().zip(lp.to_vec2::<f32>()?) {
                out[i] = row;
            }
            Ok(())
        },
        on_done,
    )?;
    Ok(out)
}

/// What [`last_positions_many`] hands each batch to: the prompts' indices, their hidden states
/// at the last position and the captured activations.
pub(crate) type EachBatch<'a> = dyn FnMut(&[usize], &Tensor, Vec<Tensor>) -> Result<()> + 'a;

/// The loop of [`next_logprobs_many`]. The prompts run in token order, so that prompts sharing
/// an opening (a system prompt, a template, a candidate trigger placed first) are neighbours,
/// several at a time ([`batches`]) as one right-padded batch, each row reading its last real
/// position (with the causal mask no real position sees the padding). A batch's common opening
/// (at least [`MIN_HEAD`] tokens, leaving every prompt one token of its own) runs once as its
/// head, itself reusing the previous batch's head as far as they agree ([`Heads`]). Each
/// forward's hidden states at the rows' last real positions (`[b, hidden]`, after the final
/// norm) go to `each` with the rows' indices in `prompts`, and the activations at `points`
/// there when asked for (`[b, hidden]` per point, [`crate::capture`]).
pub(crate) fn last_positions_many(
    model: &Llama,
    prompts: &[Vec<u32>],
    points: Option<&[HookPoint]>,
    each: &mut EachBatch<'_>,
    on_done: &mut dyn FnMut(usize),
) -> Result<()> {
    for p in prompts {
        if p.is_empty() {
            return Err(ModelError::Input("cannot score an empty prompt".into()));
        }
        check_len(model, p.len())?;
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by(|&a, &b| prompts[a].cmp(&prompts[b]));
    let mut heads = Heads::default();
    for which in batches(prompts, &order) {
        let chunk: Vec<&[u32]> = which.iter().map(|&i| prompts[i].as_slice()).collect();
        let b = chunk.len();
        let (h, head) = heads.for_batch(model, &chunk)?;
        let t = chunk.iter().map(|p| p.len() - h).max().unwrap_or(0);
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| {
                let mut r = p[h..].to_vec();
                r.resize(t, 0);
                r
            })
            .collect();
        let positions: Vec<Vec<u32>> = (0..b)
            .map(|_| (h as u32..(h + t) as u32).collect())
            .collect();
        let mask = build_mask(1, t, h + t, |_, q, k| k <= q + h)?;
        let mut cache = match head {
            Some(kv) => kv.select(&vec![0u32; b])?,
            None => model.new_cache(),
        };
        // Row i's last real position, in the flattened [B·T, H].
        let last: Vec<u32> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| (i * t + p.len() - h - 1) as u32)
            .collect();
        let step = Step {
            tokens: &u32_matrix(&rows)?,
            positions: &u32_matrix(&positions)?,
            mask: &mask,
        };
        let (hidden, captured) = match points {
            None => (model.forward(&step, Some(&mut cache))?, Vec::new()),
            Some(points) => {
                let mut c = Capture::new(points, model.cfg.num_layers, Some(&last))?;
                let hidden = model.forward_capture(&step, Some(&mut cache), &mut c)?;
                (hidden, c.into_tensors()?)
            }
        };
        let width = hidden.dim(2)?;
        let last = hidden
            .reshape((b * t, width))?
            .index_select(&Tensor::new(last.as_slice(), &Device::Cpu)?, 0)?;
        each(which, &last, captured)?;
        on_done(b);
    }
    Ok(())
}

/// The head of the last batch of [`last_positions_many`]: its tokens and their keys and
/// values. Batches run in token order, so once a batch's opening stops agreeing with this
/// head no later batch agrees with the part cut off.
#[derive(Default)]
struct Heads {
    kept: Option<(Vec<u32>, KvCache)>,
}

impl Heads {
    /// The head length of `batch` and its keys and values (none: `0`, the rows run whole).
    /// The batch's common opening, leaving each prompt a token of its own, is its head; the
    /// kept head serves as far as it agrees with it ([`MIN_HEAD`] tokens at least; cut to that
    /// length), and the rest of the opening runs as a forward of its own when it has
    /// [`MIN_HEAD`] tokens and saves the batch's other rows [`HEAD_MIN_SAVED`] tokens (fewer
    /// are cheaper run in every row).
    fn for_batch(&mut self, model: &Llama, batch: &[&[u32]]) -> Result<(usize, Option<&KvCache>)> {
        let Some(first) = batch.first() else {
            return Ok((0, None));
        };
        let mut want = first.len() - 1;
        for p in batch {
            let common = first
                .iter()
                .zip(p.iter())
                .take_while(|(a, b)| a == b)
                .count();
            want = want.min(common).min(p.len() - 1);
        }
        if want < MIN_HEAD {
            return Ok((0, None));
        }
        let agree = self.kept.as_ref().map_or(0, |(t, _)| {
            t.iter()
                .zip(&first[..want])
                .take_while(|(a, b)| a == b)
                .count()
        });
        let reuse = if agree >= MIN_HEAD { agree } else { 0 };
        let extend =
            want - reuse >= MIN_HEAD && (batch.len() - 1) * (want - reuse) >= HEAD_MIN_SAVED;
        if reuse == 0 && !extend {
            return Ok((0, None));
        }
        let (tokens, cache) = match (reuse, self.kept.take()) {
            (0, _) | (_, None) => {
                let (_, kv) = run_prompt(model, &first[..want], None)?;
                (first[..want].to_vec(), kv)
            }
            (_, Some((t, kv))) => {
                let kv = if reuse < t.len() {
                    kv.truncate(reuse)?
                } else {
                    kv
                };
                if extend {
                    let (_, kv) = run_prompt(model, &first[..want], Some((reuse, &kv)))?;
                    (first[..want].to_vec(), kv)
                } else {
                    (first[..reuse].to_vec(), kv)
                }
            }
        };
        let h = tokens.len();
        let (_, kv) = self.kept.insert((tokens, cache));
        Ok((h, Some(kv)))
    }
}

/// A prompt head's tokens and their keys and values.
struct Head {
    tokens: Vec<u32>,
    cache: KvCache,
}

/// Heads kept at once (a battery or probe uses one or a few system prompts).
const HEADS_KEPT: usize = 4;

/// Shortest head worth running on its own.
const MIN_HEAD: usize = 4;

/// Keys and values of recent prompt heads (the chat template up to the last user message's
/// text), so that prompts sharing a head run it once. [`prefill_split`] always runs a prompt as
/// head then rest, cached or not, so a prompt's numbers never depend on what ran before it. The
/// cache remembers which tensors the model was made of and forgets everything when they change
/// (an adapter attached, merged or detached).
#[derive(Default)]
pub struct HeadCache {
    model: (Vec<candle_core::TensorId>, Vec<u64>),
    heads: Vec<Head>,
}

impl HeadCache {
    /// The kept keys and values of `head`, most recently used last; forgets every head first
    /// when the model is not the one they were computed with.
    fn get(
        &mut self,
        identity: &(Vec<candle_core::TensorId>, Vec<u64>),
        head: &[u32],
    ) -> Option<KvCache> {
        if self.model != *identity {
            self.model = identity.clone();
            self.heads.clear();
        }
        let i = self.heads.iter().position(|x| x.tokens == head)?;
        let entry = self.heads.remove(i);
        let kv = entry.cache.clone();
        self.heads.push(entry);
        Some(kv)
    }

    fn put(
        &mut self,
        identity: &(Vec<candle_core::TensorId>, Vec<u64>),
        head: &[u32],
        cache: KvCache,
    ) {
        if self.model != *identity || self.heads.iter().any(|x| x.tokens == head) {
            return;
        }
        self.heads.push(Head {
            tokens: head.to_vec(),
            cache,
        });
        if self.heads.len() > HEADS_KEPT {
            self.heads.remove(0);
        }
    }
}

/// Prefills `prompt` as its first `head_len` tokens, then the rest. The head's keys and values
/// come from `cache` when it holds them (and are stored there otherwise); the lock is held only
/// to look them up or store them, so prompts on other threads prefill at the same time. A head
/// shorter than [`MIN_HEAD`] tokens, or one that leaves no rest, is not split off.
pub fn prefill_split(
    model: &Llama,
    prompt: &[u32],
    head_len: usize,
    cache: &Mutex<HeadCache>,
) -> Result<Prefilled> {
    if head_len < MIN_HEAD || head_len >= prompt.len() {
        return prefill(model, prompt);
    }
    let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
    let identity = model.identity();
    let head = &prompt[..head_len];
    let kept = lock().get(&identity, head);
    let kv = match kept {
        Some(kv) => kv,
        None => {
            let (_, kv) = run_prompt(model, head, None)?;
            lock().put(&identity, head, kv.clone());
            kv
        }
    };
    prefill_after(model, prompt, Some((head_len, &kv)))
}

/// The most token-tree nodes scored in one forward pass. Memory grows with nodes × vocabulary
/// (the log-probabilities) and nodes² (the mask): 2048 nodes over a 49 152-token vocabulary
/// take about 400 MB per copy. A range of 0..1000 is 1001 nodes with single-digit tokens.
pub const MAX_TREE_NODES: usize = 2048;

pub(crate) fn check_len(model: &Llama, n: usize) -> Result<()> {
    let max = model.rope.max_positions();
    if n > max {
        return Err(ModelError::Input(format!(
            "sequence of {n} tokens exceeds the model's context of {max} tokens"
        )));
    }
    Ok(())
}

/// A trie over token sequences. Node `i` holds `tokens[i]`, its parent (None = the prompt) and
/// depth (1 for a child of the prompt).
#[derive(Debug, Default)]
pub struct Trie {
    pub tokens: Vec<u32>,
    pub parent: Vec<Option<usize>>,
    pub depth: Vec<usize>,
}

impl Trie {
    /// How many nodes inserting `seq` would add.
    pub fn new_nodes(&self, seq: &[u32]) -> usize {
        let mut parent = None;
        for (i, &tok) in seq.iter().enumerate() {
            match (0..self.tokens.len())
                .find(|&n| self.parent[n] == parent && self.tokens[n] == tok)
            {
                Some(n) => parent = Some(n),
                None => return seq.len() - i,
            }
        }
        0
    }

    /// Inserts a sequence and returns the node of each of its tokens.
    pub fn insert(&mut self, seq: &[u32]) -> Vec<usize> {
        let mut path = Vec::with_capacity(seq.len());
        let mut parent = None;
        for &tok in seq {
            let found =
                (0..self.tokens.len()).find(|&n| self.parent[n] == parent && self.tokens[n] == tok);
            let node = match found {
                Some(n) => n,
                None => {
                    self.tokens.push(tok);
                    self.parent.push(parent);
                    self.depth
                        .push(parent.map(|p| self.depth[p] + 1).unwrap_or(1));
                    self.tokens.len() - 1
                }
            };
            path.push(node);
            parent = Some(node);
        }
        path
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn is_ancestor_or_self(&self, a: usize, mut n: usize) -> bool {
        loop {
            if n == a {
                return true;
            }
            match self.parent[n] {
                Some(p) => n = p,
                None => return false,
            }
        }
    }
}

/// Final hidden states at every trie node (`[nodes, hidden]`), computed in one forward step over
/// the prefilled prompt's cache.
fn tree_hidden(model: &Llama, pre: &Prefilled, trie: &Trie) -> Result<Tensor> {
    let n = trie.len();
    if n > MAX_TREE_NODES {
        return Err(ModelError::Input(format!(
            "{n} candidate tokens to score in one pass (at most {MAX_TREE_NODES}: the pass holds \
             a distribution over the vocabulary for each, and an attention mask of their square)"
        )));
    }
    let p = pre.len;
    let max_depth = trie.depth.iter().copied().max().unwrap_or(0);
    check_len(model, p + max_depth)?;
    let tokens = u32_matrix(std::slice::from_ref(&trie.tokens))?;
    let positions = u32_matrix(&[trie.depth.iter().map(|d| (p + d - 1) as u32).collect()])?;
    let mask = build_mask(1, n, p + n, |_, q, k| {
        k < p || trie.is_ancestor_or_self(k - p, q)
    })?;
    let mut cache = pre.cache.clone();
    let hidden = model.forward(
        &Step {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
        },
        Some(&mut cache),
    )?;
    Ok(hidden.squeeze(0)?)
}

/// Next-token log-distributions at every trie node (`[nodes][vocab]`), computed in one forward
/// step over the prefilled prompt's cache.
pub fn tree_logprobs(model: &Llama, pre: &Prefilled, trie: &Trie) -> Result<Vec<Vec<f32>>> {
    if trie.is_empty() {
        return Ok(Vec::new());
    }
    let hidden = tree_hidden(model, pre, trie)?;
    Ok(model.log_softmax(&hidden)?.to_vec2()?)
}

/// Rows of the vocabulary distribution computed at a time by [`tree_transitions`]: 256 rows of
/// a 49 152-token vocabulary are 50 MB, where all 2048 nodes at once would be 400 MB.
const VOCAB_ROWS_PER_CHUNK: usize = 256;

/// `log P(token | prompt, path to node)` for each `(node, token)` of `wanted`, from one forward
/// step over the trie's nodes: the same numbers as indexing [`tree_logprobs`], without holding
/// a distribution over the vocabulary for every node at once.
pub fn tree_transitions(
    model: &Llama,
    pre: &Prefilled,
    trie: &Trie,
    wanted: &[(usize, u32)],
) -> Result<Vec<f32>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let hidden = tree_hidden(model, pre, trie)?;
    let vocab = model.cfg.vocab_size;
    let mut by_node: Vec<Vec<(usize, u32)>> = vec![Vec::new(); trie.len()];
    for (i, &(node, tok)) in wanted.iter().enumerate() {
        by_node[node].push((i, tok));
    }
    let mut out = vec![0.0f32; wanted.len()];
    let mut start = 0;
    while start < trie.len() {
        let rows = VOCAB_ROWS_PER_CHUNK.min(trie.len() - start);
        // (row, output slot, flat index of the wanted logit) of this chunk's wanted transitions.
        let mut picks: Vec<(usize, usize, u32)> = Vec::new();
        for (r, w) in by_node[start..start + rows].iter().enumerate() {
            for &(i, tok) in w {
                picks.push((r, i, (r * vocab) as u32 + tok));
            }
        }
        if !picks.is_empty() {
            // `Llama::log_softmax`'s steps (candle's `log_softmax`: x − max − ln Σ exp(x − max)),
            // the last subtraction done only for the wanted entries: the same f32 operations,
            // without writing out and copying a distribution per node.
            let logits = model.logits(&hidden.narrow(0, start, rows)?)?;
            let diff = logits.broadcast_sub(&logits.max_keepdim(1)?)?;
            let log_sum: Vec<f32> = diff.exp()?.sum_keepdim(1)?.log()?.squeeze(1)?.to_vec1()?;
            let flat: Vec<u32> = picks.iter().map(|p| p.2).collect();
            let picked: Vec<f32> = diff
                .flatten_all()?
                .index_select(&Tensor::new(flat.as_slice(), &Device::Cpu)?, 0)?
                .to_vec1()?;
            for (&(r, i, _), d) in picks.iter().zip(picked) {
                out[i] = d - log_sum[r];
            }
        }
        start += rows;
    }
    Ok(out)
}

/// Scores of one candidate answer.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateScore {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// log P(first token of the candidate | prompt)
    pub first_token_logprob: f64,
    /// log P(all candidate tokens, then the end-of-turn token | prompt)
    pub logprob: f64,
}

/// Exact scores of a set of candidate answers to one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct OptionScores {
    pub prompt_tokens: usize,
    pub candidates: Vec<CandidateScore>,
    /// Probability of a first token that starts none of the candidates.
    pub off_candidate_first_token_mass: f64,
    /// The vectors the model was steered by (none: not steered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<selfaware_types::SteerRecord>,
}

/// Scores candidates given as token sequences (without the end-of-turn token, which is
/// appended here).
pub fn score_candidates(
    model: &Llama,
    pre: &Prefilled,
    candidates: &[(String, Vec<u32>)],
    eot: u32,
) -> Result<OptionScores> {
    // Candidates go into token trees of at most MAX_TREE_NODES nodes each, one forward pass
    // per tree over the same prefilled prompt: many candidates (a 100-word list in all its
    // spellings) cost several bounded passes instead of one unbounded one. The end-of-turn
    // token closing each candidate is read off its last token's node and needs no node of its
    // own: nothing is scored after it.
    let mut tries: Vec<Trie> = vec![Trie::default()];
    // (tree, path) of each candidate.
    let mut paths = Vec::with_capacity(candidates.len());
    for (text, ids) in candidates {
        if ids.is_empty() {
            return Err(ModelError::Input(format!(
                "candidate {text:?} has no tokens"
            )));
        }
        let last = tries.last_mut().expect("at least one tree");
        if !last.is_empty() && last.len() + last.new_nodes(ids) > MAX_TREE_NODES {
            tries.push(Trie::default());
        }
        let t = tries.len() - 1;
        paths.push((t, tries[t].insert(ids)));
    }
    // The transitions each tree's candidates read: token i+1 at the node of token i, and the
    // end-of-turn token at the last node.
    let mut wanted: Vec<Vec<(usize, u32)>> = vec![Vec::new(); tries.len()];
    let mut slots = Vec::with_capacity(candidates.len());
    for (t, path) in &paths {
        let trie = &tries[*t];
        let first = wanted[*t].len();
        for w in path.windows(2) {
            wanted[*t].push((w[0], trie.tokens[w[1]]));
        }
        wanted[*t].push((*path.last().expect("non-empty path"), eot));
        slots.push(first..wanted[*t].len());
    }
    let lps = tries
        .iter()
        .zip(&wanted)
        .map(|(trie, w)| tree_transitions(model, pre, trie, w))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(candidates.len());
    let mut firsts: Vec<u32> = Vec::new();
    for (((text, ids), (t, _)), slot) in candidates.iter().zip(&paths).zip(slots) {
        let first = pre.next[ids[0] as usize] as f64;
        let total = lps[*t][slot].iter().fold(first, |acc, &l| acc + l as f64);
        if !firsts.contains(&ids[0]) {
            firsts.push(ids[0]);
        }
        out.push(CandidateScore {
            text: text.clone(),
            token_ids: ids.clone(),
            first_token_logprob: first,
            logprob: total,
        });
    }
    let inside: f64 = firsts
        .iter()
        .map(|&t| (pre.next[t as usize] as f64).exp())
        .sum();
    Ok(OptionScores {
        prompt_tokens: pre.len,
        candidates: out,
        off_candidate_first_token_mass: (1.0 - inside).max(0.0),
        steering: steering_of(model),
    })
}

/// Log-probabilities of one integer answer.
#[derive(Debug, Clone, Serialize)]
pub struct NumberScore {
    pub n: i64,
    /// log [P(digits of n) · P(next token does not start with a digit)]
    pub logprob_starts_with: f64,
    /// log [P(digits of n) · P(end-of-turn)]
    pub logprob_complete: f64,
}

/// The exact distribution of a numeric answer over a range.
#[derive(Debug, Clone, Serialize)]
pub struct RangeScores {
    pub prompt_tokens: usize,
    pub numbers: Vec<NumberScore>,
    /// Σₙ P(answer starts with exactly n)
    pub mass_starts_with: f64,
    /// Σₙ n·P(starts with n) / mass_starts_with (None when the mass is 0)
    pub expected_value_starts_with: Option<f64>,
    /// Σₙ P(answer is exactly n)
    pub mass_complete: f64,
    pub expected_value_complete: Option<f64>,
    /// The vectors the model was steered by (none: not steered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<selfaware_types::SteerRecord>,
}

/// Scores every integer in `lo..=hi` written in plain decimal, each tokenized as the model's
/// tokenizer would write it (`number_ids[i]` for `lo + i`). `digit_start[t]` tells whether token
/// `t`'s text begins with an ASCII digit.
pub fn score_range(
    model: &Llama,
    pre: &Prefilled,
    lo: i64,
    number_ids: &[Vec<u32>],
    digit_start: &[bool],
    eot: u32,
) -> Result<RangeScores> {
    let mut trie = Trie::default();
    let paths: Vec<Vec<usize>> = number_ids.iter().map(|ids| trie.insert(ids)).collect();
    let lp = tree_logprobs(model, pre, &trie)?;
    let mut numbers = Vec::with_capacity(number_ids.len());
    let (mut mass_s, mut ev_s, mut mass_c, mut ev_c) = (0.0, 0.0, 0.0, 0.0);
    for (i, (ids, path)) in number_ids.iter().zip(&paths).enumerate() {
        let n = lo + i as i64;
        if ids.is_empty() {
            return Err(ModelError::Input(format!("number {n} has no tokens")));
        }
        let mut digits = pre.next[ids[0] as usize] as f64;
        for w in path.windows(2) {
            digits += lp[w[0]][trie.tokens[w[1]] as usize] as f64;
        }
        let last = &lp[*path.last().expect("non-empty path")];
        // Sum the non-digit mass directly rather than computing 1 − P(digit): when the model
        // is sure another digit follows, 1 − P(digit) cancels catastrophically.
        let p_other: f64 = last
            .iter()
            .zip(digit_start)
            .filter(|(_, &d)| !d)
            .map(|(l, _)| (*l as f64).exp())
            .sum();
        let starts = digits + p_other.ln();
        let complete = digits + last[eot as usize] as f64;
        mass_s += starts.exp();
        ev_s += n as f64 * starts.exp();
        mass_c += complete.exp();
        ev_c += n as f64 * complete.exp();
        numbers.push(NumberScore {
            n,
            logprob_starts_with: starts,
            logprob_complete: complete,
        });
    }
    Ok(RangeScores {
        prompt_tokens: pre.len,
        numbers,
        mass_starts_with: mass_s,
        expected_value_starts_with: (mass_s > 0.0).then(|| ev_s / mass_s),
        mass_complete: mass_c,
        expected_value_complete: (mass_c > 0.0).then(|| ev_c / mass_c),
        steering: steering_of(model),
    })
}

/// The records of the vectors `model` is steered by.
fn steering_of(model: &Llama) -> Vec<selfaware_types::SteerRecord> {
    model
        .steering
        .as_deref()
        .map_or_else(Vec::new, |s| s.records().to_vec())
}

/// Per-token log-probabilities of whole sequences (each token given the ones before it; the
/// first token gets none), batched with right padding: `result[b][i]` = log P(seq[b][i+1] | ..).
pub fn sequence_logprobs(model: &Llama, seqs: &[Vec<u32>], pad: u32) -> Result<Vec<Vec<f32>>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    check_len(model, t)?;
    let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let rows: Vec<Vec<u32>> = seqs
        .iter()
        .map(|s| {
            let mut r = s.clone();
            r.resize(t, pad);
            r
        })
        .collect();
    let tokens = u32_matrix(&rows)?;
    let positions = u32_matrix(&vec![(0..t as u32).collect(); seqs.len()])?;
    let mask = build_mask(seqs.len(), t, t, |b, q, k| {
        k <= q && (k < lens[b] || k == q)
    })?;
    let hidden = model.forward(
        &Step {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
        },
        None,
    )?;
    let mut out = Vec::with_capacity(seqs.len());
    for (b, s) in seqs.iter().enumerate() {
        if s.len() < 2 {
            out.push(Vec::new());
            continue;
        }
        // Only the positions that predict a real next token go through the LM head.
        let h = hidden.i((b, 0..s.len() - 1))?;
        let lp = model.log_softmax(&h)?;
        let targets = Tensor::new(&s[1..], &Device::Cpu)?.unsqueeze(1)?;
        let picked: Vec<f32> = lp.gather(&targets, 1)?.squeeze(1)?.to_vec1()?;
        out.push(picked);
    }
    Ok(out)
}

/// The ten likeliest numbers and both masses, as `selfaware score --range` prints them.
impl std::fmt::Display for RangeScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self;
        writeln!(f, "prompt tokens: {}", r.prompt_tokens)?;
        write_steering(f, &r.steering)?;
        writeln!(
            f,
            "{:>6}  {:>12}  {:>12}",
            "n", "P(starts n)", "P(exactly n)"
        )?;
        let mut rows: Vec<_> = r.numbers.iter().collect();
        rows.sort_by(|x, y| y.logprob_starts_with.total_cmp(&x.logprob_starts_with));
        for n in rows.iter().take(10) {
            writeln!(
                f,
                "{:>6}  {:>12.6}  {:>12.6}",
                n.n,
                n.logprob_starts_with.exp(),
                n.logprob_complete.exp()
            )?;
        }
        let ev = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into());
        writeln!(
            f,
            "mass (starts with): {:.6}  expected value: {}",
            r.mass_starts_with,
            ev(r.expected_value_starts_with)
        )?;
        writeln!(
            f,
            "mass (exactly):     {:.6}  expected value: {}",
            r.mass_complete,
            ev(r.expected_value_complete)
        )?;
        Ok(())
    }
}

/// Each candidate's probabilities and the mass outside them, as `selfaware score --options`
/// prints them.
/// One line per steering vector: `steered: ALPHA × POINT of FILE (sha256 PREFIX)`.
fn write_steering(
    f: &mut std::fmt::Formatter<'_>,
    steering: &[selfaware_types::SteerRecord],
) -> std::fmt::Result {
    for s in steering {
        let sha = &s.sha256[..s.sha256.len().min(12)];
        writeln!(
            f,
            "steered: {} × {} of {} (sha256 {sha})",
            s.alpha, s.point, s.file
        )?;
    }
    Ok(())
}

impl std::fmt::Display for OptionScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self;
        writeln!(f, "prompt tokens: {}", r.prompt_tokens)?;
        write_steering(f, &r.steering)?;
        writeln!(
            f,
            "{:<20}  {:>14}  {:>16}",
            "candidate", "P(first token)", "P(answer + end)"
        )?;
        for c in &r.candidates {
            writeln!(
                f,
                "{:<20}  {:>14.6}  {:>16.6}",
                c.text,
                c.first_token_logprob.exp(),
                c.logprob.exp()
            )?;
        }
        writeln!(
            f,
            "first-token mass outside all candidates: {:.6}",
            r.off_candidate_first_token_mass
        )?;
        Ok(())
    }
}

/// Parses an inclusive integer range `LO..HI` (or `LO..=HI`); the error says what was wrong,
/// quoting the input.
pub fn parse_range(r: &str) -> std::result::Result<(i64, i64), String> {
    let (lo, hi) = r
        .split_once("..")
        .ok_or_else(|| format!("{r:?}: expected LO..HI, e.g. 0..100"))?;
    let int = |x: &str| {
        x.trim()
            .trim_start_matches('=')
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{r:?}: {x:?} is not an integer"))
    };
    let (lo, hi) = (int(lo)?, int(hi)?);
    if hi < lo {
        return Err(format!("{r:?}: the upper end is below the lower end"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod range_tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_inclusive_and_errors_quote_the_input() {
        assert_eq!(parse_range("0..100"), Ok((0, 100)));
        assert_eq!(parse_range(" -3 ..= 4"), Ok((-3, 4)));
        assert!(parse_range("10..5")
            .unwrap_err()
            .starts_with("\"10..5\": the upper"));
        assert!(parse_range("a..5")
            .unwrap_err()
            .contains("\"a\" is not an integer"));
        assert!(parse_range("5").unwrap_err().contains("LO..HI"));
    }
}
