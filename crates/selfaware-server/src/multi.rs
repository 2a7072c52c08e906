//! Different prompts decoded together on a local engine: the unseeded whole-answer groups and
//! unseeded streams of one worker batch ([`crate::batch`]) become one call of the model's
//! decoder (`selfaware_model::sample::decode`): one left-padded prefill of their distinct
//! prompts, then one forward per step for every answer still generating. Each answer draws
//! from its own seeded stream, as it would alone; the numbers differ from decoding each prompt
//! alone only by float rounding (about 1e-6), since padded rows change the shapes of the matrix
//! products. Streamed members get each token as the batch makes it.

use std::ops::ControlFlow;

use selfaware_backend::local::{completion, decode_request};
use selfaware_backend::{BackendError, Completion, CompletionRequest, Completions};
use selfaware_model::sample::{self, Event};
use selfaware_model::Engine;
use tokio::sync::mpsc::UnboundedSender;

use crate::batch::{deliver, panic_message, Job};
use crate::stream::{message, StreamMsg};
use crate::ApiError;

/// A member of a batch across prompts.
pub(crate) enum Member {
    /// Whole-answer jobs sharing one request.
    Group(Vec<Job>, CompletionRequest),
    /// One streamed answer.
    Stream(UnboundedSender<StreamMsg>, CompletionRequest),
}

impl Member {
    pub fn n(&self) -> usize {
        match self {
            Member::Group(_, req) => req.n,
            Member::Stream(..) => 1,
        }
    }

    fn req(&self) -> &CompletionRequest {
        match self {
            Member::Group(_, req) | Member::Stream(_, req) => req,
        }
    }

    fn fail(self, err: ApiError, rows: usize) {
        match self {
            Member::Group(jobs, _) => deliver(jobs, &Err(err), rows),
            Member::Stream(tx, _) => {
                let _ = tx.send(StreamMsg::Failed(err));
            }
        }
    }
}

/// Decodes the members together and answers each. A member whose prompt cannot be decoded
/// (it fails to render, or is too long) gets its error and leaves the batch.
pub(crate) fn run_batch(engine: &Engine, batch: Vec<Member>) {
    let mut ready: Vec<Member> = Vec::new();
    let mut requests: Vec<sample::Request> = Vec::new();
    for m in batch {
        let checked = decode_request(engine, m.req()).and_then(|mut r| {
            r.stream_text = matches!(m, Member::Stream(..));
            r.cfg.n = m.n();
            sample::check_request(&engine.model, &r)?;
            Ok(r)
        });
        match checked {
            Err(e) => m.fail(ApiError::from(e), 0),
            Ok(r) => {
                requests.push(r);
                ready.push(m);
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let rows: usize = requests.iter().map(|r| r.cfg.n).sum();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine
            .decode(&requests, &mut |event| {
                match &event {
                    Event::Started { samples } => {
                        for (m, r) in ready.iter().zip(&requests) {
                            if let Member::Stream(tx, _) = m {
                                let _ = tx.send(StreamMsg::Started {
                                    prompt_tokens: r.prompt.len(),
                                    rows: *samples,
                                });
                            }
                        }
                    }
                    Event::Token { request, .. } | Event::Finished { request, .. } => {
                        if let Member::Stream(tx, req) = &ready[*request] {
                            let sent = message(engine, &event, req.logprobs).map(|m| tx.send(m));
                            if let Some(Err(_)) = sent {
                                return ControlFlow::Break(());
                            }
                        }
                    }
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| ApiError::from(BackendError::Model(e)))
    }))
    .unwrap_or_else(|p| {
        Err(ApiError::internal(format!(
            "the model panicked: {}",
            panic_message(p)
        )))
    });
    match result {
        Err(err) => {
            for m in ready {
                m.fail(err.clone(), rows);
            }
        }
        Ok(generated) => {
            for ((m, answers), r) in ready.into_iter().zip(generated).zip(&requests) {
                // Streams were sent everything, their end included.
                if let Member::Group(jobs, req) = m {
                    let choices: Vec<Completion> = answers
                        .iter()
                        .map(|g| completion(engine, g, req.logprobs))
                        .collect();
                    let completion_tokens = choices.iter().map(|c| c.tokens).sum::<Option<usize>>();
                    let out = Completions {
                        prompt_tokens: Some(r.prompt.len()),
                        completion_tokens,
                        choices,
                    };
                    deliver(jobs, &Ok(out), rows);
                }
            }
        }
    }
}
