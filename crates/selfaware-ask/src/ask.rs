//! The primitives every battery and probe is made of: answer probabilities, exact where the
//! backend can compute them (a local model, or a server that returns prompt log-probabilities)
//! and otherwise the paper's estimators from the top log-probabilities of the first answer
//! token; and seeded samples. The choice between the two is made here, from
//! [`Backend::capabilities`], and nowhere else.

use std::collections::HashSet;

use selfaware_backend::{Backend, BackendError, CompletionRequest};
use selfaware_eval::spec::NumericMode;
use selfaware_types::Conversation;

use crate::error::{AskError, Result};

/// First-token probabilities of answer labels.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstToken {
    /// Exact probability of each label's first token, in label order.
    Exact(Vec<f64>),
    /// The server's most likely first tokens with their log-probabilities (finite ones only).
    TopLogprobs(Vec<(String, f64)>),
}

/// A distribution over the integers `min..=max`.
#[derive(Debug, Clone, PartialEq)]
pub enum Numbers {
    /// Exact probability of each number, from `min` up.
    Exact(Vec<f64>),
    /// The server's most likely first tokens (the paper's estimator reads numbers among them).
    TopLogprobs(Vec<(String, f64)>),
}

/// How first-token probabilities and numbers are computed for `b`, in words, for reports.
pub fn method(b: &dyn Backend) -> &'static str {
    if b.engine().is_some() {
        "exact (local engine)"
    } else if b.capabilities().exact_scoring {
        "exact (the server's prompt log-probabilities)"
    } else {
        "estimated from the server's top log-probabilities"
    }
}

/// First-token probabilities of `labels` (which must start with different tokens): exact when
/// the backend scores exactly, else the top log-probabilities of the first answer token.
pub fn label_probs(b: &dyn Backend, conv: &Conversation, labels: &[String]) -> Result<FirstToken> {
    if !b.capabilities().exact_scoring {
        return Ok(FirstToken::TopLogprobs(top_first(b, conv)?));
    }
    exact_first(labels, &b.first_token_logprobs(conv, labels)?)
}

/// [`label_probs`] for many conversations (a probe's items), in order; an exact backend runs
/// them through [`Backend::first_token_logprobs_many`] (the local engine side by side).
/// `on_done(k)`: `k` more conversations finished.
pub fn label_probs_many(
    b: &dyn Backend,
    convs: &[Conversation],
    labels: &[String],
    on_done: &mut dyn FnMut(usize),
) -> Result<Vec<FirstToken>> {
    if !b.capabilities().exact_scoring {
        return convs
            .iter()
            .map(|c| {
                let r = top_first(b, c).map(FirstToken::TopLogprobs);
                on_done(1);
                r
            })
            .collect();
    }
    b.first_token_logprobs_many(convs, labels, on_done)?
        .iter()
        .map(|firsts| exact_first(labels, firsts))
        .collect()
}

/// The distribution of an integer answer in `min..=max`. Exact on an exact backend: from its
/// range scores, or — for a server, which scores only whole answers — each number scored as
/// the complete answer (`numeric` = complete); otherwise (and for "starts with n" on a server)
/// the top log-probabilities of the first token.
pub fn numbers(
    b: &dyn Backend,
    conv: &Conversation,
    min: u32,
    max: u32,
    numeric: NumericMode,
) -> Result<Numbers> {
    if !b.capabilities().exact_scoring {
        return Ok(Numbers::TopLogprobs(top_first(b, conv)?));
    }
    match b.score_range(conv, i64::from(min), i64::from(max)) {
        Ok(r) => Ok(Numbers::Exact(
            r.numbers
                .iter()
                .map(|n| match numeric {
                    NumericMode::Complete => n.logprob_complete.exp(),
                    NumericMode::StartsWith => n.logprob_starts_with.exp(),
                })
                .collect(),
        )),
        Err(BackendError::Unsupported { .. }) if numeric == NumericMode::Complete => {
            let numbers: Vec<String> = (min..=max).map(|n| n.to_string()).collect();
            let r = b.score_options(conv, &numbers)?;
            Ok(Numbers::Exact(
                r.candidates.iter().map(|c| c.logprob.exp()).collect(),
            ))
        }
        Err(BackendError::Unsupported { .. }) => Ok(Numbers::TopLogprobs(top_first(b, conv)?)),
        Err(e) => Err(e.into()),
    }
}

/// log P(candidate, then end of turn) of each candidate; exact backends only.
pub fn sequence_logprobs(
    b: &dyn Backend,
    conv: &Conversation,
    cands: &[String],
) -> Result<Vec<f64>> {
    if !b.capabilities().exact_scoring {
        return Err(AskError::NeedsExact {
            model: b.model_id().to_string(),
            what: "score whole answers".into(),
        });
    }
    Ok(b.score_options(conv, cands)?
        .candidates
        .iter()
        .map(|c| c.logprob)
        .collect())
}

/// How answers are sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub n: usize,
    pub temperature: f64,
    pub max_tokens: usize,
    pub seed: u64,
}

/// `s.n` sampled answers (top-p 1). A backend whose requests take at most `max_n` samples gets
/// several requests, the k-th with seed `seed + k` (one request, seed `seed`, when `n` fits).
pub fn sample(b: &dyn Backend, conv: &Conversation, s: Sampling) -> Result<Vec<String>> {
    Ok(sample_many(b, std::slice::from_ref(conv), s)?
        .pop()
        .unwrap_or_default())
}

/// [`sample`] for each of `convs`, all their requests given to the backend as one
/// [`Backend::complete_many`] (the local engine decodes them together, a server answers them
/// concurrently); each conversation's answers are those [`sample`] gives it alone.
pub fn sample_many(
    b: &dyn Backend,
    convs: &[Conversation],
    s: Sampling,
) -> Result<Vec<Vec<String>>> {
    let max_n = b.capabilities().max_n.max(1);
    let mut reqs = Vec::new();
    // The requests of conversation i are reqs[ends[i - 1]..ends[i]].
    let mut ends = Vec::with_capacity(convs.len());
    for conv in convs {
        let mut left = s.n;
        let mut k = 0;
        while left > 0 {
            let n = left.min(max_n);
            reqs.push(CompletionRequest {
                conversation: conv.clone(),
                n,
                temperature: s.temperature,
                top_p: 1.0,
                max_tokens: s.max_tokens,
                seed: s.seed.wrapping_add(k),
                stop: Vec::new(),
                logprobs: false,
                top_logprobs: 0,
            });
            left -= n;
            k += 1;
        }
        ends.push(reqs.len());
    }
    let mut done = b.complete_many(&reqs).into_iter();
    let mut out = Vec::with_capacity(convs.len());
    let mut start = 0;
    for end in ends {
        let mut answers = Vec::with_capacity(s.n);
        for r in done.by_ref().take(end - start) {
            answers.extend(r?.choices.into_iter().map(|c| c.text));
        }
        start = end;
        if answers.len() != s.n {
            return Err(AskError::Backend(BackendError::BadResponse {
                url: b.location(),
                message: format!(
                    "`{}` returned {} samples, {} were asked for",
                    b.model_id(),
                    answers.len(),
                    s.n
                ),
            }));
        }
        out.push(answers);
    }
    Ok(out)
}

/// The most likely first answer tokens (one greedy token with the most top log-probabilities
/// the backend allows, at most 20 as in the paper). Entries of probability 0 (logprob −∞,
/// which JSON cannot carry) are dropped.
pub fn top_first(b: &dyn Backend, conv: &Conversation) -> Result<Vec<(String, f64)>> {
    let k = b.capabilities().max_top_logprobs.clamp(1, 20);
    let req = CompletionRequest {
        conversation: conv.clone(),
        n: 1,
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 1,
        seed: 0,
        stop: Vec::new(),
        logprobs: true,
        top_logprobs: k,
    };
    let c = b.complete(&req)?;
    let first = c
        .choices
        .first()
        .and_then(|ch| ch.logprobs.as_ref())
        .and_then(|lp| lp.first())
        .ok_or_else(|| {
            AskError::Backend(BackendError::BadResponse {
                url: b.location(),
                message: format!(
                    "`{}` returned no log-probabilities for the first answer token",
                    b.model_id()
                ),
            })
        })?;
    Ok(first
        .top_logprobs
        .iter()
        .filter(|t| t.logprob.is_finite())
        .map(|t| (t.token.clone(), t.logprob))
        .collect())
}

/// The probabilities of labels from their first tokens' log-probabilities; labels that share a
/// first token cannot be told apart this way.
fn exact_first(labels: &[String], firsts: &[(u32, f64)]) -> Result<FirstToken> {
    let mut seen = HashSet::new();
    if !firsts.iter().all(|(first, _)| seen.insert(*first)) {
        return Err(AskError::Input {
            what: "option labels",
            message: format!(
                "{labels:?} share a first token, so first-token probabilities cannot tell them \
                 apart"
            ),
        });
    }
    Ok(FirstToken::Exact(
        firsts.iter().map(|(_, lp)| lp.exp()).collect(),
    ))
}

/// Exact scores of each item's candidates (`(conversation, candidates)`), asked `concurrency`
/// at a time as `selfaware eval` asks prompts (default, as there: the thread count for a
/// local model, at most 4; 8 for a served one), returned in item order. The first error
/// stops the rest and is returned, naming the item.
pub fn score_options_many(
    b: &dyn Backend,
    items: &[(Conversation, Vec<String>)],
    concurrency: Option<usize>,
    threads: usize,
) -> Result<Vec<selfaware_backend::OptionScores>> {
    let concurrency = match concurrency {
        Some(0) => return Err(AskError::input("concurrency", "expected at least 1")),
        Some(c) => c,
        None => crate::eval::default_concurrency(b, threads),
    };
    let mut out = Vec::with_capacity(items.len());
    crate::pool::ordered(
        items.len(),
        concurrency,
        &|i| {
            let (conv, options) = &items[i];
            b.score_options(conv, options)
                .map_err(|e| AskError::input("items", format!("item {i}: {e}")))
        },
        &mut |r| {
            out.push(r);
            Ok(())
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfaware_backend::{MockBackend, MockScript};

    fn labels() -> Vec<String> {
        vec!["A".into(), "B".into()]
    }

    fn conv() -> Conversation {
        Conversation::user(None, "A or B?")
    }

    #[test]
    fn exact_backends_give_exact_label_probabilities() {
        let m = MockBackend::new("m", MockScript::new(&[("A", 0.6), ("B", 0.3)]));
        let FirstToken::Exact(p) = label_probs(&m, &conv(), &labels()).unwrap() else {
            panic!("expected exact probabilities");
        };
        assert!((p[0] - 0.6).abs() < 1e-12 && (p[1] - 0.3).abs() < 1e-12);
        assert_eq!(method(&m), "exact (the server's prompt log-probabilities)");
        // No completion was needed.
        assert!(m.calls().is_empty());
    }

    #[test]
    fn estimating_backends_give_the_top_logprobs_of_one_greedy_token() {
        let mut s = MockScript::new(&[("A", 0.6), ("B", 0.3), ("C", 0.0)]);
        s.exact_scoring = false;
        let m = MockBackend::new("m", s);
        let FirstToken::TopLogprobs(top) = label_probs(&m, &conv(), &labels()).unwrap() else {
            panic!("expected top logprobs");
        };
        // C has probability 0: dropped (JSON has no -inf); A first.
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, "A");
        assert!((top[0].1 - 0.6f64.ln()).abs() < 1e-12);
        let calls = m.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].max_tokens, calls[0].top_logprobs), (1, 20));
        assert_eq!(calls[0].temperature, 0.0);
        assert_eq!(
            method(&m),
            "estimated from the server's top log-probabilities"
        );
        assert!(matches!(
            sequence_logprobs(&m, &conv(), &labels()),
            Err(AskError::NeedsExact { .. })
        ));
    }

    #[test]
    fn many_conversations_report_progress_and_keep_order() {
        let m = MockBackend::with_fn("m", |c: &Conversation| {
            // (`capabilities` asks the script about an empty conversation.)
            if c.messages
                .first()
                .is_some_and(|m| m.content.contains("first"))
            {
                MockScript::new(&[("A", 0.9), ("B", 0.1)])
            } else {
                MockScript::new(&[("A", 0.2), ("B", 0.8)])
            }
        });
        let convs = vec![
            Conversation::user(None, "first"),
            Conversation::user(None, "second"),
        ];
        let mut done = 0;
        let out = label_probs_many(&m, &convs, &labels(), &mut |k| done += k).unwrap();
        assert_eq!(done, 2);
        assert_eq!(
            out[0],
            FirstToken::Exact(vec![0.9f64.ln().exp(), 0.1f64.ln().exp()])
        );
        assert_eq!(
            out[1],
            FirstToken::Exact(vec![0.2f64.ln().exp(), 0.8f64.ln().exp()])
        );
    }

    #[test]
    fn numbers_are_exact_or_estimated_by_capability() {
        let m = MockBackend::new("m", MockScript::new(&[("3", 0.25), ("4", 0.5)]));
        let Numbers::Exact(p) = numbers(&m, &conv(), 3, 5, NumericMode::Complete).unwrap() else {
            panic!("exact");
        };
        assert_eq!(p.len(), 3);
        assert!((p[0] - 0.25).abs() < 1e-12 && (p[1] - 0.5).abs() < 1e-12 && p[2] == 0.0);
        let mut s = MockScript::new(&[("3", 0.25), ("4", 0.5)]);
        s.exact_scoring = false;
        let m = MockBackend::new("m", s);
        let Numbers::TopLogprobs(top) = numbers(&m, &conv(), 3, 5, NumericMode::Complete).unwrap()
        else {
            panic!("estimated");
        };
        assert_eq!(top[0].0, "4");
    }

    #[test]
    fn samples_split_into_requests_of_at_most_max_n_with_consecutive_seeds() {
        let m = MockBackend::new("m", MockScript::new(&[("x", 1.0)]));
        let s = Sampling {
            n: 130,
            temperature: 1.0,
            max_tokens: 4,
            seed: 7,
        };
        let out = sample(&m, &conv(), s).unwrap();
        assert_eq!(out.len(), 130);
        let calls = m.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].n, calls[0].seed), (128, 7));
        assert_eq!((calls[1].n, calls[1].seed), (2, 8));
    }

    #[test]
    fn labels_sharing_a_first_token_are_an_error() {
        let m = MockBackend::new("m", MockScript::new(&[("A", 0.5)]));
        let e = label_probs(&m, &conv(), &["A".into(), "A".into()]).unwrap_err();
        assert!(e.to_string().contains("share a first token"), "{e}");
    }
}
