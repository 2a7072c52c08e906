//! `selfaware._selfaware`: the native half of the Python package `selfaware`.
//!
//! A thin layer over the libraries, as the command line is: [`Model`] opens any model
//! reference through [`selfaware_backend::ModelRef`] and answers with the same serialisations
//! as `selfaware score --json` (the Python half turns them into dataclasses), so the two can
//! be compared byte for byte; [`cli_main`] is the whole `selfaware` command
//! ([`selfaware_cli::main_with_args`]) for the wheel's console script. Model work runs with
//! the interpreter detached, on a long-lived worker thread, while the calling thread checks
//! for signals every 50 ms, so other Python threads run and Ctrl-C stops the wait (the worker
//! finishes that call's work and its result is dropped). Every error is a
//! `selfaware.SelfawareError` whose message is the command line's.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use selfaware_activations::Positions;
use selfaware_backend::{Backend, CompletionRequest, ModelRef, OpenOptions};
use selfaware_model::HookPoint;
use selfaware_types::Conversation;

pyo3::create_exception!(
    _selfaware,
    SelfawareError,
    PyException,
    "An error of selfaware, with the command line's message."
);

/// `{e:#}`: the error and its causes, as the command line prints them after `error: `.
fn err(e: impl std::fmt::Display) -> PyErr {
    SelfawareError::new_err(format!("{e:#}"))
}

type Job = Box<dyn FnOnce() + Send>;

/// Idle model worker threads, each waiting on its own channel.
static IDLE: std::sync::Mutex<Vec<mpsc::Sender<Job>>> = std::sync::Mutex::new(Vec::new());

/// Hands `job` to an idle worker thread, or to a new one when none is idle. Workers live on
/// after their job and wait for the next: one call after another runs on the same thread, so
/// its allocator arena and candle's thread-local state stay warm, as in the command line's
/// runner. A call abandoned by Ctrl-C keeps its worker busy until its work ends, and the next
/// call takes another. A job that panics is caught (its caller gets an error).
fn dispatch(job: Job) -> PyResult<()> {
    let idle = IDLE.lock().ok().and_then(|mut v| v.pop());
    let job = match idle {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let (tx, rx) = mpsc::channel::<Job>();
    tx.send(job)
        .map_err(|_| SelfawareError::new_err("starting a model worker thread"))?;
    std::thread::Builder::new()
        .name("selfaware-model".into())
        .spawn(move || {
            for job in rx {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                match IDLE.lock() {
                    Ok(mut v) => v.push(tx.clone()),
                    Err(_) => return,
                }
            }
        })
        .map_err(|e| SelfawareError::new_err(format!("starting a model worker thread: {e}")))?;
    Ok(())
}

/// Runs `f` on a model worker thread ([`dispatch`]) with the interpreter detached; checks for
/// signals (Ctrl-C) while waiting.
fn interruptible<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    dispatch(job)?;
    // (Only this thread receives; the lock makes the receiver shareable with the detached
    // closure.)
    let rx = std::sync::Mutex::new(rx);
    loop {
        let got = py.detach(|| {
            rx.lock()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)?
                .recv_timeout(Duration::from_millis(50))
        });
        match got {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SelfawareError::new_err(
                    "the model's work stopped without an answer (it panicked)",
                ))
            }
        }
    }
}

/// selfaware's home: `home`, else `$SELFAWARE_HOME`, else `$XDG_CACHE_HOME/selfaware`, else
/// `~/.cache/selfaware` (as the command line resolves it).
fn resolve_home(home: Option<PathBuf>) -> PyResult<PathBuf> {
    selfaware_model::home::resolve_home(home, &|k| std::env::var_os(k))
        .ok_or_else(|| err("cannot find a home for selfaware\nhint: set SELFAWARE_HOME"))
}

fn lookup_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn log_line(line: &str) {
    eprintln!("selfaware: {line}");
}

fn conversation(messages_json: &str) -> PyResult<Conversation> {
    let messages = serde_json::from_str(messages_json).map_err(|e| {
        err(format!(
            "messages: expected a list of {{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": str}}: {e}"
        ))
    })?;
    Ok(Conversation::new(messages))
}

/// A model: `default`, a GGUF file, a Hugging Face folder, `URL#MODEL` on an
/// OpenAI-compatible server or a finetune result file, with an optional adapter.
#[pyclass(module = "selfaware._selfaware", frozen)]
struct Model {
    backend: Arc<dyn Backend>,
    reference: String,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (model = "default", adapter = None, api_key_env = None, estimate = false, home = None))]
    fn new(
        py: Python<'_>,
        model: &str,
        adapter: Option<PathBuf>,
        api_key_env: Option<String>,
        estimate: bool,
        home: Option<PathBuf>,
    ) -> PyResult<Model> {
        let home = resolve_home(home)?;
        let python = std::env::var("SELFAWARE_PYTHON").unwrap_or_else(|_| "python3".into());
        let r = ModelRef::parse(model)
            .and_then(|r| r.with_adapter(adapter.as_deref()))
            .map_err(err)?;
        let reference = r.to_string();
        let backend = interruptible(py, move || {
            let opts = OpenOptions {
                home: &home,
                python: &python,
                api_key_env: api_key_env.as_deref(),
                estimate,
                lookup: &lookup_env,
                log: &log_line,
            };
            r.open(&opts)
                .map_err(|e| format!("opening model `{r}`: {e:#}"))
        })?
        .map_err(err)?;
        Ok(Model { backend, reference })
    }

    /// The model reference as given (with its adapter).
    #[getter]
    fn reference(&self) -> &str {
        &self.reference
    }

    /// The model's id, as records name it.
    #[getter]
    fn model_id(&self) -> String {
        self.backend.model_id().to_string()
    }

    /// Exact scores of candidate answers, as `selfaware score --options … --json` prints them.
    fn score_json(
        &self,
        py: Python<'_>,
        messages_json: &str,
        options: Vec<String>,
    ) -> PyResult<String> {
        let conv = conversation(messages_json)?;
        if options.is_empty() || options.iter().any(String::is_empty) {
            return Err(err("options: expected non-empty candidate answers"));
        }
        let b = self.backend.clone();
        let r = interruptible(py, move || b.score_options(&conv, &options))?.map_err(|e| {
            err(format!(
                "scoring candidates exactly: {e}\nhint: exact scores need a local model or a server that returns prompt log-probabilities (vLLM, `selfaware serve`)"
            ))
        })?;
        serde_json::to_string_pretty(&r).map_err(err)
    }

    /// [`Model::score_json`] for many prompts, asked `concurrency` at a time as `selfaware
    /// eval` asks them (default: one per compute thread, at most 4, for a local model; 8 for a
    /// served one); in item order.
    #[pyo3(signature = (messages_json, options, concurrency = None))]
    fn score_many_json(
        &self,
        py: Python<'_>,
        messages_json: Vec<String>,
        options: Vec<Vec<String>>,
        concurrency: Option<usize>,
    ) -> PyResult<Vec<String>> {
        if messages_json.len() != options.len() {
            return Err(err(format!(
                "options: expected one list of candidates per prompt ({} prompts, {} lists)",
                messages_json.len(),
                options.len()
            )));
        }
        let mut items = Vec::with_capacity(options.len());
        for (i, (m, o)) in messages_json.iter().zip(options).enumerate() {
            let conv =
                conversation(m).map_err(|e| err(format!("prompts[{i}]: {}", e.value(py))))?;
            if o.is_empty() || o.iter().any(String::is_empty) {
                return Err(err(format!(
                    "options[{i}]: expected non-empty candidate answers"
                )));
            }
            items.push((conv, o));
        }
        let threads = selfaware_model::runtime::threads();
        let b = self.backend.clone();
        let all = interruptible(py, move || {
            selfaware_ask::ask::score_options_many(b.as_ref(), &items, concurrency, threads)
                .map_err(|e| e.to_string())
        })?
        .map_err(|e| {
            err(format!(
                "scoring candidates exactly: {e}\nhint: exact scores need a local model or a server that returns prompt log-probabilities (vLLM, `selfaware serve`)"
            ))
        })?;
        all.iter()
            .map(|r| serde_json::to_string_pretty(r).map_err(err))
            .collect()
    }

    /// The exact distribution over the integers `lo..=hi`, as `selfaware score --range
    /// LO..HI --json` prints it.
    fn score_range_json(
        &self,
        py: Python<'_>,
        messages_json: &str,
        lo: i64,
        hi: i64,
    ) -> PyResult<String> {
        let conv = conversation(messages_json)?;
        let b = self.backend.clone();
        let r = interruptible(py, move || b.score_range(&conv, lo, hi))?.map_err(|e| {
            err(format!(
                "scoring {lo}..{hi} exactly: {e}\nhint: exact ranges need a local model (a server scores whole answers: options with the numbers)"
            ))
        })?;
        serde_json::to_string_pretty(&r).map_err(err)
    }

    /// `n` seeded completions.
    #[pyo3(signature = (messages_json, n = 1, temperature = 1.0, top_p = 1.0, max_tokens = 64, seed = 0))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one per setting
    fn sample(
        &self,
        py: Python<'_>,
        messages_json: &str,
        n: usize,
        temperature: f64,
        top_p: f64,
        max_tokens: usize,
        seed: u64,
    ) -> PyResult<Vec<String>> {
        let mut req = CompletionRequest::new(conversation(messages_json)?);
        req.n = n;
        req.temperature = temperature;
        req.top_p = top_p;
        req.max_tokens = max_tokens;
        req.seed = seed;
        let b = self.backend.clone();
        let out = interruptible(py, move || b.complete(&req))?.map_err(err)?;
        Ok(out.choices.into_iter().map(|c| c.text).collect())
    }

    /// Activations at hook points (TransformerLens names; `blocks.*.HOOK` for every layer)
    /// for a list of conversations, as `selfaware activations capture` records them:
    /// `(points as (name, little-endian f32 bytes of [rows, d])), rows, d, offsets, token
    /// ids, prompt sha256s)`. Local models only.
    #[allow(clippy::type_complexity)] // the tuple the Python half unpacks
    fn activations<'py>(
        &self,
        py: Python<'py>,
        conversations_json: Vec<String>,
        points: Vec<String>,
        positions: &str,
    ) -> PyResult<(
        Vec<(String, Bound<'py, PyBytes>)>,
        usize,
        usize,
        Vec<usize>,
        Vec<u32>,
        Vec<String>,
    )> {
        let engine = self.backend.engine().cloned().ok_or_else(|| {
            err(format!(
                "activations: `{}` is served; activations need a local model (default, a .gguf file or a Hugging Face folder)",
                self.reference
            ))
        })?;
        let positions: Positions = positions
            .parse()
            .map_err(|e| err(format!("positions: {e}")))?;
        let points = HookPoint::parse_list(&points.join(","), engine.model.cfg.num_layers)
            .map_err(|e| err(format!("points: {e}")))?;
        let convs = conversations_json
            .iter()
            .enumerate()
            .map(|(i, c)| {
                conversation(c).map_err(|e| err(format!("prompts[{i}]: {}", e.value(py))))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let got = interruptible(py, move || {
            selfaware_activations::capture_conversations(&engine, &convs, &points, positions)
        })?
        .map_err(err)?;
        let arrays = got
            .points
            .iter()
            .map(|(name, values)| {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), PyBytes::new(py, &bytes))
            })
            .collect();
        Ok((
            arrays,
            got.rows,
            got.d,
            got.offsets,
            got.token_ids,
            got.prompt_sha256,
        ))
    }
}

/// The `selfaware` command line (`argv[0]` first); returns its exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(move || selfaware_cli::main_with_args(argv))
}

#[pymodule]
fn _selfaware(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The engine's allocator settings, as the command line makes them.
    selfaware_model::runtime::tune_allocator();
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("SelfawareError", m.py().get_type::<SelfawareError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
