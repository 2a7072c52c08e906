use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_model::{CandidateScore, NumberScore, OptionScores, RangeScores};
use selfaware_types::Conversation;

use crate::{
    Backend, BackendError, Capabilities, Completion, CompletionRequest, Completions, FinishReason,
    Result, TokenLogprob, TopLogprob,
};

/// What a [`MockBackend`] answers to one conversation: a distribution over whole answers, each
/// treated as a single token. Scores, samples and logprobs are all derived from it, so they agree
/// the way a real model's would.
#[derive(Debug, Clone, PartialEq)]
pub struct MockScript {
    /// Answers and their probabilities (the rest of the mass goes to an answer no caller asks
    /// about, spelled `"<other>"`).
    pub answers: Vec<(String, f64)>,
    /// Whether `score_options`/`score_range` answer (true) or return `Unsupported` (false), to
    /// exercise callers' estimator paths.
    pub exact_scoring: bool,
}

impl MockScript {
    /// A script with exact scoring on.
    pub fn new(answers: &[(&str, f64)]) -> Self {
        MockScript {
            answers: answers.iter().map(|(a, p)| (a.to_string(), *p)).collect(),
            exact_scoring: true,
        }
    }

    fn prob(&self, answer: &str) -> f64 {
        self.answers
            .iter()
            .filter(|(a, _)| a == answer)
            .map(|(_, p)| p)
            .sum()
    }

    /// The most probable answer (ties: the first listed); `"<other>"` when the unlisted mass
    /// is larger than every listed answer's.
    fn greedy(&self) -> String {
        let listed: f64 = self.answers.iter().map(|(_, p)| p).sum();
        let mut best = ("<other>".to_string(), 1.0 - listed);
        for (a, _) in &self.answers {
            let p = self.prob(a);
            if p > best.1 {
                best = (a.clone(), p);
            }
        }
        best.0
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> String {
        let u: f64 = rng.gen();
        let mut cum = 0.0;
        for (a, p) in &self.answers {
            cum += p;
            if u < cum {
                return a.clone();
            }
        }
        "<other>".to_string()
    }
}

/// The one "token" a mock answer is: a stable id per distinct text (FNV-1a, 31 bits), so
/// different answers have different first tokens, as whole-answer tokens would.
pub fn mock_token_id(answer: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in answer.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x7fff_ffff
}

type ScriptFn = dyn Fn(&Conversation) -> MockScript + Send + Sync;

/// A scripted backend for tests of logic that consumes a [`Backend`].
pub struct MockBackend {
    id: String,
    script: Box<ScriptFn>,
    calls: Mutex<Vec<CompletionRequest>>,
}

impl std::fmt::Debug for MockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBackend").field("id", &self.id).finish()
    }
}

impl MockBackend {
    /// The same script for every conversation.
    pub fn new(id: impl Into<String>, script: MockScript) -> Self {
        Self::with_fn(id, move |_| script.clone())
    }

    /// A script chosen per conversation.
    pub fn with_fn(
        id: impl Into<String>,
        f: impl Fn(&Conversation) -> MockScript + Send + Sync + 'static,
    ) -> Self {
        MockBackend {
            id: id.into(),
            script: Box::new(f),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every completion request received so far, in order.
    pub fn calls(&self) -> Vec<CompletionRequest> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn unsupported(&self, what: &str) -> BackendError {
        BackendError::Unsupported {
            backend: format!("mock backend `{}`", self.id),
            what: what.to_string(),
        }
    }
}

impl Backend for MockBackend {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exact_scoring: (self.script)(&Conversation::default()).exact_scoring,
            max_top_logprobs: 20,
            max_n: 128,
            deterministic_seed: true,
        }
    }

    fn score_options(&self, conv: &Conversation, options: &[String]) -> Result<OptionScores> {
        let s = (self.script)(conv);
        if !s.exact_scoring {
            return Err(self.unsupported("score options exactly"));
        }
        let mut inside = 0.0;
        let mut seen: Vec<&str> = Vec::new();
        let candidates = options
            .iter()
            .map(|o| {
                let p = s.prob(o);
                if !seen.contains(&o.as_str()) {
                    seen.push(o);
                    inside += p;
                }
                CandidateScore {
                    text: o.clone(),
                    token_ids: vec![mock_token_id(o)],
                    first_token_logprob: p.ln(),
                    logprob: p.ln(),
                }
            })
            .collect();
        Ok(OptionScores {
            prompt_tokens: 0,
            candidates,
            off_candidate_first_token_mass: (1.0 - inside).max(0.0),
            steering: Vec::new(),
        })
    }

    fn score_range(&self, conv: &Conversation, lo: i64, hi: i64) -> Result<RangeScores> {
        let s = (self.script)(conv);
        if !s.exact_scoring {
            return Err(self.unsupported("score a numeric range exactly"));
        }
        if hi < lo {
            return Err(BackendError::InvalidRequest {
                param: Some("hi".into()),
                message: format!("range {lo}..={hi} is empty"),
            });
        }
        let (mut mass, mut ev) = (0.0, 0.0);
        let numbers = (lo..=hi)
            .map(|n| {
                let p = s.prob(&n.to_string());
                mass += p;
                ev += n as f64 * p;
                NumberScore {
                    n,
                    logprob_starts_with: p.ln(),
                    logprob_complete: p.ln(),
                }
            })
            .collect();
        let expected = (mass > 0.0).then(|| ev / mass);
        Ok(RangeScores {
            prompt_tokens: 0,
            numbers,
            mass_starts_with: mass,
            expected_value_starts_with: expected,
            mass_complete: mass,
            expected_value_complete: expected,
            steering: Vec::new(),
        })
    }

    /// The script's answers as tokens ([`mock_token_id`]), with the unlisted mass on the
    /// token of `"<other>"`; only with exact scoring on (a mock "server" sees no logits).
    fn next_token_distributions_many(
        &self,
        convs: &[Conversation],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        convs
            .iter()
            .map(|c| {
                let s = (self.script)(c);
                if !s.exact_scoring {
                    return Err(self.unsupported("return the full next-token distribution"));
                }
                let mut dist: std::collections::BTreeMap<u32, f64> = Default::default();
                let mut listed = 0.0;
                for (a, p) in &s.answers {
                    listed += p;
                    *dist.entry(mock_token_id(a)).or_default() += p;
                }
                *dist.entry(mock_token_id("<other>")).or_default() += (1.0 - listed).max(0.0);
                on_done(1);
                Ok(dist
                    .into_iter()
                    .filter(|(_, p)| *p > 0.0)
                    .map(|(id, p)| (id, p.ln()))
                    .collect())
            })
            .collect()
    }

    fn complete(&self, req: &CompletionRequest) -> Result<Completions> {
        req.validate(&self.capabilities())?;
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(req.clone());
        }
        let s = (self.script)(&req.conversation);
        let mut top: Vec<&(String, f64)> = s.answers.iter().filter(|(_, p)| *p > 0.0).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(req.top_logprobs);
        let choices = (0..req.n)
            .map(|i| {
                // Temperature 0 is greedy, as a real model's decoding is.
                let text = if req.temperature == 0.0 {
                    s.greedy()
                } else {
                    let mut rng = ChaCha8Rng::seed_from_u64(req.seed);
                    rng.set_stream(i as u64);
                    s.draw(&mut rng)
                };
                let logprobs = req.logprobs.then(|| {
                    vec![TokenLogprob {
                        token: text.clone(),
                        bytes: Some(text.as_bytes().to_vec()),
                        logprob: s.prob(&text).ln(),
                        top_logprobs: top
                            .iter()
                            .map(|(a, p)| TopLogprob {
                                token: a.clone(),
                                bytes: Some(a.as_bytes().to_vec()),
                                logprob: p.ln(),
                            })
                            .collect(),
                    }]
                });
                Completion {
                    text,
                    finish_reason: FinishReason::Stop,
                    tokens: Some(1),
                    logprobs,
                }
            })
            .collect();
        Ok(Completions {
            prompt_tokens: None,
            completion_tokens: Some(req.n),
            choices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Conversation {
        Conversation::user(None, "Pick A or B")
    }

    #[test]
    fn scores_samples_and_logprobs_agree() {
        let m = MockBackend::new("mock", MockScript::new(&[("A", 0.7), ("B", 0.2)]));
        let s = m.score_options(&conv(), &["A".into(), "B".into()]).unwrap();
        assert!((s.candidates[0].logprob.exp() - 0.7).abs() < 1e-12);
        assert!((s.off_candidate_first_token_mass - 0.1).abs() < 1e-12);
        let mut req = CompletionRequest::new(conv());
        req.n = 2000;
        let err = m.complete(&req).unwrap_err();
        assert!(matches!(err, BackendError::InvalidRequest { .. }), "{err}");
        req.n = 100;
        req.logprobs = true;
        req.top_logprobs = 1;
        let out = m.complete(&req).unwrap();
        let a = out.choices.iter().filter(|c| c.text == "A").count();
        assert!((55..=85).contains(&a), "{a} of 100 were A");
        let lp = out.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp[0].top_logprobs.len(), 1);
        assert_eq!(lp[0].top_logprobs[0].token, "A");
        // Same seed, same samples; sample i does not depend on n.
        req.n = 3;
        let again = m.complete(&req).unwrap();
        assert_eq!(again.choices[..], out.choices[..3]);
        assert_eq!(m.calls().len(), 2);
    }

    #[test]
    fn the_next_token_distribution_is_the_script_with_the_rest_on_other() {
        let m = MockBackend::new("mock", MockScript::new(&[("A", 0.7), ("B", 0.2)]));
        let d = m
            .next_token_distributions_many(&[conv()], &mut |_| {})
            .unwrap();
        let mut expect = vec![
            (mock_token_id("A"), 0.7f64.ln()),
            (mock_token_id("B"), 0.2f64.ln()),
            (mock_token_id("<other>"), (1.0f64 - 0.9).ln()),
        ];
        expect.sort_by_key(|e| e.0);
        assert_eq!(d[0].len(), 3);
        for (got, want) in d[0].iter().zip(&expect) {
            assert_eq!(got.0, want.0);
            assert!((got.1 - want.1).abs() < 1e-12);
        }
        let mut s = MockScript::new(&[("A", 1.0)]);
        s.exact_scoring = false;
        let e = MockBackend::new("mock", s)
            .next_token_distributions_many(&[conv()], &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, BackendError::Unsupported { .. }));
    }

    #[test]
    fn range_and_unsupported() {
        let m = MockBackend::new("mock", MockScript::new(&[("3", 0.5), ("5", 0.5)]));
        let r = m.score_range(&conv(), 0, 9).unwrap();
        assert!((r.expected_value_complete.unwrap() - 4.0).abs() < 1e-12);
        let mut s = MockScript::new(&[("3", 1.0)]);
        s.exact_scoring = false;
        let m = MockBackend::new("mock", s);
        assert!(!m.capabilities().exact_scoring);
        let e = m.score_range(&conv(), 0, 9).unwrap_err();
        assert!(matches!(e, BackendError::Unsupported { .. }));
    }
}
