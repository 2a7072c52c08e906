//! The per-model worker: a thread that owns the model's calls and batches requests.
//!
//! The worker blocks on its queue, then takes every request waiting there and groups them:
//! requests with the same conversation, temperature, top-p, `max_tokens` and stop strings share
//! one `Backend::complete` call, which the local engine decodes as one batch.
//!
//! - Requests that name a seed are merged only with identical requests (same seed and `n`):
//!   they share one call and all get its answer, exactly what each would get alone. (Merging
//!   different `n` would change the decode's batch size, and with it the float rounding of the
//!   logprobs, by about 1e-5.)
//! - Requests without a seed get consecutive, disjoint slices of one call whose seed comes from
//!   the worker's seeded generator.
//!
//! Logprobs are computed when any request of a group asks, with the largest `top_logprobs`,
//! and trimmed per request (the alternatives are sorted, so trimming is exact).
//!
//! On a local engine, groups of requests without a seed (whose answers are random anyway) of
//! at most [`MAX_CROSS_GROUP_N`] samples are decoded together even when their prompts differ:
//! one padded batch, one forward per token for all of them ([`crate::multi`]), at most
//! [`MAX_CROSS_ROWS`] sequences. Their numbers then differ from a lone decode by float rounding
//! only; requests that name a seed keep running alone, bit for bit reproducible.
//!
//! Streamed requests (`n = 1`, local engine) get every token as it is made. Unseeded streams
//! join the batch across prompts; a seeded one is generated alone ([`crate::stream`]), the same
//! tokens and logprobs as the unstreamed answer. The number of sequences decoded together is
//! returned in the `x-selfaware-batch-rows` response header.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_backend::{Backend, CompletionRequest, Completions};
use selfaware_model::Engine;

use crate::multi::Member;
use crate::stream::StreamMsg;
use crate::ApiError;

/// One queued request. `seeded` is false when the client gave no seed (then `req.seed` is
/// ignored and the worker chooses one).
pub struct Job {
    pub req: CompletionRequest,
    pub seeded: bool,
    pub reply: Reply,
}

/// Where a job's answer goes.
pub enum Reply {
    /// The whole answer at once, with how many sequences were decoded in its batch.
    Whole(tokio::sync::oneshot::Sender<(Result<Completions, ApiError>, usize)>),
    /// Token by token, generated on this local engine (one answer; `req.n` is ignored).
    Stream {
        engine: Arc<Engine>,
        tx: tokio::sync::mpsc::UnboundedSender<StreamMsg>,
    },
}

/// The sending side of a model's queue.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
}

impl Queue {
    /// Starts the worker thread of `backend` with a queue of `capacity` requests. With the
    /// local `engine` behind the backend, unseeded requests with different prompts are decoded
    /// together.
    pub fn start(
        id: &str,
        backend: Arc<dyn Backend>,
        engine: Option<Arc<Engine>>,
        settings: WorkerSettings,
    ) -> std::io::Result<Queue> {
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.capacity.max(1));
        std::thread::Builder::new()
            .name(format!("model-{id}"))
            .spawn(move || worker(backend.as_ref(), engine, rx, settings))?;
        Ok(Queue { tx })
    }

    /// Queues a job; a full queue is a 503.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::internal("the server is overloaded; retry later")
                .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE),
            TrySendError::Disconnected(_) => ApiError::internal("the model worker has stopped"),
        })
    }
}

fn same_group(
    a: &CompletionRequest,
    a_seeded: bool,
    b: &CompletionRequest,
    b_seeded: bool,
) -> bool {
    a_seeded == b_seeded
        && (!a_seeded || (a.seed == b.seed && a.n == b.n))
        && a.conversation == b.conversation
        && a.temperature.to_bits() == b.temperature.to_bits()
        && a.top_p.to_bits() == b.top_p.to_bits()
        && a.max_tokens == b.max_tokens
        && a.stop == b.stop
}

/// Groups of job indices, in arrival order, that can share one call of at most `max_n` samples.
pub fn plan(jobs: &[(CompletionRequest, bool)], max_n: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, (req, seeded)) in jobs.iter().enumerate() {
        let fits = |g: &Vec<usize>| {
            let (first, first_seeded) = &jobs[g[0]];
            if !same_group(first, *first_seeded, req, *seeded) {
                return false;
            }
            // Seeded members share one call of their common n; unseeded ones add up.
            *seeded || g.iter().map(|&j| jobs[j].0.n).sum::<usize>() + req.n <= max_n
        };
        match groups.iter_mut().find(|g| fits(g)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// How a worker queues and batches.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Requests waiting before new ones get 503.
    pub capacity: usize,
    /// Seeds the seeds of requests that bring none.
    pub seed: u64,
    /// While clients are concurrent, how long to keep collecting after the first request.
    pub window: Duration,
}

fn worker(
    backend: &dyn Backend,
    engine: Option<Arc<Engine>>,
    rx: Receiver<Job>,
    settings: WorkerSettings,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let max_n = backend.capabilities().max_n;
    let mut last_batch = 0;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        // With several clients, replies of the last batch come back as new requests within a
        // moment; waiting for them keeps all clients in one batch instead of letting them drift
        // into alternating half-batches. A lone client never waits.
        if jobs.len() > 1 || last_batch > 1 {
            let deadline = Instant::now() + settings.window;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
        }
        last_batch = jobs.len();
        let (streams, jobs): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| matches!(j.reply, Reply::Stream { .. }));
        // Seeded streams run alone, bit for bit what the same seed gives unstreamed.
        let (cross_streams, alone_streams): (Vec<Job>, Vec<Job>) = streams
            .into_iter()
            .partition(|j| !j.seeded && engine.is_some());
        for job in alone_streams {
            run_stream(job, &mut rng);
        }
        let keys: Vec<(CompletionRequest, bool)> =
            jobs.iter().map(|j| (j.req.clone(), j.seeded)).collect();
        let mut slots: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
        let mut cross: Vec<Vec<Job>> = Vec::new();
        for group in plan(&keys, max_n) {
            let members: Vec<Job> = group.iter().filter_map(|&i| slots[i].take()).collect();
            let unseeded = members.first().is_some_and(|j| !j.seeded);
            let n: usize = members.iter().map(|j| j.req.n).sum();
            if engine.is_some() && unseeded && n <= MAX_CROSS_GROUP_N {
                cross.push(members);
            } else {
                run_group(backend, members, &mut rng);
            }
        }
        match engine.as_deref() {
            Some(e) if cross.len() + cross_streams.len() > 1 => {
                run_cross(e, cross, cross_streams, &mut rng)
            }
            _ => {
                for members in cross {
                    run_group(backend, members, &mut rng);
                }
                for job in cross_streams {
                    run_stream(job, &mut rng);
                }
            }
        }
    }
}

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn run_stream(job: Job, rng: &mut ChaCha8Rng) {
    let Reply::Stream { engine, tx } = job.reply else {
        return;
    };
    let mut req = job.req;
    if !job.seeded {
        req.seed = rng.next_u64();
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::stream::generate(&engine, &req, &tx)
    }))
    .unwrap_or_else(|p| {
        Err(ApiError::internal(format!(
            "the model panicked: {}",
            panic_message(p)
        )))
    });
    if let Err(e) = result {
        let _ = tx.send(StreamMsg::Failed(e));
    }
}

/// The one request a group's members share: logprobs when any asks, the largest
/// `top_logprobs`, and for unseeded members their summed `n` under a seed drawn from `rng`.
fn merged_request(jobs: &[Job], rng: &mut ChaCha8Rng) -> Option<CompletionRequest> {
    let first = jobs.first()?;
    let mut req = first.req.clone();
    req.logprobs = jobs.iter().any(|j| j.req.logprobs);
    req.top_logprobs = jobs.iter().map(|j| j.req.top_logprobs).max().unwrap_or(0);
    if !first.seeded {
        req.n = jobs.iter().map(|j| j.req.n).sum();
        req.seed = rng.next_u64();
    }
    Some(req)
}

fn run_group(backend: &dyn Backend, jobs: Vec<Job>, rng: &mut ChaCha8Rng) {
    let Some(req) = merged_request(&jobs, rng) else {
        return;
    };
    // A panic inside the model must not take the worker (and every later request) down.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.complete(&req)))
        .unwrap_or_else(|p| {
            Err(selfaware_backend::BackendError::Config(format!(
                "the model panicked: {}",
                panic_message(p)
            )))
        })
        .map_err(ApiError::from);
    deliver(jobs, &result, req.n);
}

/// Most samples decoded together across prompts.
pub const MAX_CROSS_ROWS: usize = 64;
/// Groups asking for more samples than this run alone, where samples of one prompt share
/// their common prefixes.
pub const MAX_CROSS_GROUP_N: usize = 8;

/// Unseeded groups and streams with different prompts decoded together on the local engine
/// ([`crate::multi`]), at most [`MAX_CROSS_ROWS`] samples per batch.
fn run_cross(engine: &Engine, groups: Vec<Vec<Job>>, streams: Vec<Job>, rng: &mut ChaCha8Rng) {
    let mut members = Vec::new();
    for jobs in groups {
        if let Some(req) = merged_request(&jobs, rng) {
            members.push(Member::Group(jobs, req));
        }
    }
    for job in streams {
        if let Reply::Stream { tx, .. } = job.reply {
            let mut req = job.req;
            req.n = 1;
            req.seed = rng.next_u64();
            members.push(Member::Stream(tx, req));
        }
    }
    let mut batch: Vec<Member> = Vec::new();
    let mut rows = 0;
    for m in members {
        if rows + m.n() > MAX_CROSS_ROWS && !batch.is_empty() {
            crate::multi::run_batch(engine, std::mem::take(&mut batch));
            rows = 0;
        }
        rows += m.n();
        batch.push(m);
    }
    if !batch.is_empty() {
        crate::multi::run_batch(engine, batch);
    }
}

/// Hands each member its part of the group's answer; `rows` sequences were decoded together.
pub(crate) fn deliver(jobs: Vec<Job>, result: &Result<Completions, ApiError>, rows: usize) {
    let seeded = jobs.first().is_some_and(|j| j.seeded);
    let mut offset = 0;
    for job in jobs {
        let out = match result {
            Err(e) => Err(e.clone()),
            Ok(all) => {
                let start = if seeded { 0 } else { offset };
                offset += job.req.n;
                let mut choices = all.choices[start..start + job.req.n].to_vec();
                for c in &mut choices {
                    if !job.req.logprobs {
                        c.logprobs = None;
                    } else if let Some(lps) = &mut c.logprobs {
                        for t in lps {
                            t.top_logprobs.truncate(job.req.top_logprobs);
                        }
                    }
                }
                let completion_tokens = choices.iter().map(|c| c.tokens).sum::<Option<usize>>();
                Ok(Completions {
                    prompt_tokens: all.prompt_tokens,
                    completion_tokens,
                    choices,
                })
            }
        };
        if let Reply::Whole(reply) = job.reply {
            let _ = reply.send((out, rows));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfaware_types::Conversation;

    fn req(prompt: &str, n: usize, seed: u64) -> CompletionRequest {
        let mut r = CompletionRequest::new(Conversation::user(None, prompt));
        r.n = n;
        r.seed = seed;
        r
    }

    #[test]
    fn plans_group_by_prompt_settings_and_seed() {
        let jobs = vec![
            (req("a", 2, 0), false),
            (req("b", 1, 0), false),
            (req("a", 3, 0), false),
            (req("a", 1, 7), true),
            (req("a", 4, 7), true),
            (req("a", 1, 8), true),
            (req("a", 1, 7), true),
        ];
        assert_eq!(
            plan(&jobs, 128),
            vec![vec![0, 2], vec![1], vec![3, 6], vec![4], vec![5]]
        );
        // Unseeded groups are split when their total n would pass the cap.
        assert_eq!(plan(&jobs[..3], 4), vec![vec![0], vec![1], vec![2]]);
        let mut t = req("a", 1, 0);
        t.temperature = 0.5;
        assert_eq!(plan(&[(req("a", 1, 0), false), (t, false)], 128).len(), 2);
    }
}
