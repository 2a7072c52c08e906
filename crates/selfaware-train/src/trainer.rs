//! The training loop, readable top to bottom: plan every optimizer step's batches up front
//! (seeded), then for each step run forward and backward on its micro-batches, accumulate
//! gradients, clip, and take an AdamW step at the scheduled learning rate. Checkpoints hold the
//! trained weights, the optimizer moments and the step counter; every random stream is derived
//! from `(seed, step)`, so a resumed run continues bit for bit.
//!
//! What is trained is the [`TrainMethod`]: a LoRA adapter (`lora`), or one steering vector added
//! at a hook point at every position (`steer`, [`SteerVar`]). Both go through the same data,
//! batches, loss, optimizer, schedule, checkpoints and manifest; only the variables differ.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfaware_model::llama::PROJECTIONS;
use selfaware_model::lora::{Adapter, Dropout, LoraSpec, ADAPTER_WEIGHTS};
use selfaware_model::{HookPoint, Llama, SteerVar};
use serde::{Deserialize, Serialize};

use crate::batch::{derive_seed, plan_epoch, Batch, STREAM_DROPOUT};
use crate::data::Dataset;
use crate::error::{io, Result, TrainError};
use crate::loss::batch_nll;
use crate::optim::{clip_grad_norm, AdamW, AdamWParams};
use crate::schedule::{lr_factor, Decay};

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrainMethod {
    /// A LoRA adapter on the projections `target_modules` names (PEFT format).
    #[default]
    Lora,
    /// One additive vector at `point`, written as a file `--steer FILE:POINT:1` reads.
    Steer,
}

impl TrainMethod {
    pub const ALL: [TrainMethod; 2] = [TrainMethod::Lora, TrainMethod::Steer];

    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            TrainMethod::Lora => "lora",
            TrainMethod::Steer => "steer",
        }
    }

    fn is_lora(&self) -> bool {
        *self == TrainMethod::Lora
    }
}

selfaware_types::names_parse_and_display!(TrainMethod);

/// A hook point in files as it is spelled (`blocks.3.hook_resid_post`).
mod point_name {
    use selfaware_model::HookPoint;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<HookPoint>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&p.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HookPoint>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Every training setting; saved resolved in checkpoints and the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// What is trained. Not written for LoRA (files without it are LoRA runs), so LoRA
    /// checkpoints and manifests are what they were before steering vectors could be trained.
    #[serde(default, skip_serializing_if = "TrainMethod::is_lora")]
    pub method: TrainMethod,
    /// Where the steering vector is added (`steer` only; `rank`, `alpha`, `dropout` and
    /// `target_modules` are LoRA's and unused then).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "point_name")]
    pub point: Option<HookPoint>,
    pub seed: u64,
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps of linear warmup from 0.
    pub warmup_steps: usize,
    pub decay: Decay,
    /// Clip the global gradient norm to this (None: no clipping).
    pub max_grad_norm: Option<f64>,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
    /// Save a checkpoint every this many optimizer steps (0: only at the end of each epoch).
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: TrainMethod::Lora,
            point: None,
            seed: 0,
            epochs: 3,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            decay: Decay::Linear,
            max_grad_norm: Some(1.0),
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: PROJECTIONS.iter().map(|s| s.to_string()).collect(),
            checkpoint_every: 0,
        }
    }
}

impl TrainConfig {
    /// The LoRA part of the settings.
    pub fn lora_spec(&self) -> LoraSpec {
        LoraSpec {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            targets: self.target_modules.clone(),
            use_rslora: false,
        }
    }

    /// Checks ranges; errors name the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(TrainError::Config {
                field,
                message: message.to_string(),
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("betas", "must be in [0, 1)");
        }
        if self.weight_decay < 0.0 {
            return bad("weight_decay", "must not be negative");
        }
        if self.max_grad_norm.is_some_and(|m| m <= 0.0) {
            return bad("max_grad_norm", "must be positive");
        }
        match (self.method, self.point) {
            (TrainMethod::Steer, None) => {
                return bad(
                    "point",
                    "a steering vector needs the hook point it is added at \
                     (e.g. blocks.3.hook_resid_post)",
                )
            }
            (TrainMethod::Steer, Some(_)) if self.dropout != 0.0 => {
                return bad("dropout", "is LoRA dropout; a steering vector takes none")
            }
            (TrainMethod::Steer, Some(_)) => return Ok(()),
            (TrainMethod::Lora, Some(_)) => {
                return bad("point", "is for a steering vector (method steer), not LoRA")
            }
            (TrainMethod::Lora, None) => {}
        }
        self.lora_spec().validate().map_err(|e| TrainError::Config {
            field: "lora",
            message: e.to_string(),
        })
    }
}

/// The micro-batches (example indices) of one optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub epoch: usize,
    pub batches: Vec<Vec<usize>>,
    /// Last step of its epoch.
    pub ends_epoch: bool,
}

/// Every optimizer step of a run, in order.
pub fn plan_run(data: &Dataset, cfg: &TrainConfig) -> Vec<StepPlan> {
    let lengths: Vec<usize> = data.examples.iter().map(|e| e.len()).collect();
    let mut steps = Vec::new();
    for epoch in 0..cfg.epochs {
        let batches = plan_epoch(&lengths, cfg.batch_size, cfg.seed, epoch);
        let groups: Vec<Vec<Vec<usize>>> =
            batches.chunks(cfg.grad_accum).map(<[_]>::to_vec).collect();
        let n = groups.len();
        for (i, g) in groups.into_iter().enumerate() {
            steps.push(StepPlan {
                epoch,
                batches: g,
                ends_epoch: i + 1 == n,
            });
        }
    }
    steps
}

/// What happened in one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based.
    pub step: usize,
    pub epoch: usize,
    /// Mean cross-entropy over the step's trained tokens.
    pub loss: f64,
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Real tokens processed (forward and backward).
    pub tokens: usize,
    pub trained_tokens: usize,
    pub seconds: f64,
}

/// Events reported to the caller while training.
#[derive(Debug)]
pub enum Event<'a> {
    Step {
        log: &'a StepLog,
        total_steps: usize,
    },
    Checkpoint {
        path: &'a Path,
    },
}

/// State saved in a checkpoint beside the trained weights and the optimizer moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    pub step: usize,
    pub adam_t: usize,
    pub config: TrainConfig,
    pub data_sha256: String,
    pub log: Vec<StepLog>,
}

const STATE_FILE: &str = "trainer_state.json";
/// The trained steering vector, in the output folder and in each checkpoint.
pub const STEER_FILE: &str = "steer.safetensors";
/// The optimizer's moments in a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Directory of checkpoints inside the output directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The weights a run trains.
#[derive(Clone)]
pub(crate) enum Trained {
    Lora(Adapter),
    Steer(SteerVar),
}

impl Trained {
    /// The file holding these weights in a checkpoint (and in the output folder).
    fn weights_file(&self) -> &'static str {
        match self {
            Trained::Lora(_) => ADAPTER_WEIGHTS,
            Trained::Steer(_) => STEER_FILE,
        }
    }
}

/// A training run in progress.
pub struct Trainer<'d> {
    pub cfg: TrainConfig,
    data: &'d Dataset,
    pad: u32,
    /// The base model with the trainable adapter or steering vector attached.
    model: Llama,
    pub(crate) trained: Trained,
    /// The trainable variables: the adapter's by PEFT name, or the steering vector by point.
    vars: Vec<(String, Var)>,
    opt: AdamW,
    plan: Vec<StepPlan>,
    /// Optimizer steps done.
    pub step: usize,
    pub log: Vec<StepLog>,
}

impl<'d> Trainer<'d> {
    /// A fresh run on a copy of `base`: a new adapter initialised from the seed (LoRA), or a
    /// zero steering vector at the configured point.
    pub fn new(base: &Llama, pad: u32, data: &'d Dataset, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        match (cfg.method, cfg.point) {
            (TrainMethod::Steer, Some(point)) => {
                let steer = SteerVar::zeros(point, &base.cfg)?;
                let mut plain = base.clone();
                plain.detach_adapters();
                let model = steer.attach(&plain)?;
                let vars = vec![(point.to_string(), steer.var.clone())];
                Self::start(model, pad, data, cfg, Trained::Steer(steer), vars)
            }
            _ => {
                let adapter = Adapter::init(&base.cfg, &cfg.lora_spec(), cfg.seed)?;
                Self::with_adapter(base, pad, data, cfg, adapter)
            }
        }
    }

    /// A fresh LoRA run starting from a given adapter (its spec must match `cfg`).
    pub fn with_adapter(
        base: &Llama,
        pad: u32,
        data: &'d Dataset,
        cfg: TrainConfig,
        mut adapter: Adapter,
    ) -> Result<Self> {
        cfg.validate()?;
        if cfg.method != TrainMethod::Lora {
            return Err(TrainError::Config {
                field: "method",
                message: format!("is {}; an adapter is trained by method lora", cfg.method),
            });
        }
        let vars = adapter.make_trainable()?;
        let mut model = base.clone();
        model.detach_adapters();
        model.attach_adapter(&adapter, Path::new("<training adapter>"))?;
        Self::start(model, pad, data, cfg, Trained::Lora(adapter), vars)
    }

    fn start(
        model: Llama,
        pad: u32,
        data: &'d Dataset,
        cfg: TrainConfig,
        trained: Trained,
        vars: Vec<(String, Var)>,
    ) -> Result<Self> {
        let only_vars: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
        let opt = AdamW::new(
            &only_vars,
            AdamWParams {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.adam_eps,
                weight_decay: cfg.weight_decay,
            },
        )?;
        let plan = plan_run(data, &cfg);
        Ok(Trainer {
            cfg,
            data,
            pad,
            model,
            trained,
            vars,
            opt,
            plan,
            step: 0,
            log: Vec::new(),
        })
    }

    /// Every optimizer step's micro-batches (example indices).
    pub fn plan(&self) -> &[StepPlan] {
        &self.plan
    }

    /// Total optimizer steps of the run.
    /// What `train --dry-run` prints: the counts of the run and its time, estimated from one
    /// timed step (the first batch's loss and gradients).
    pub fn dry_run(&self) -> Result<String> {
        let t0 = std::time::Instant::now();
        let (_, _, tokens, _) = self.loss_and_grads(0)?;
        let rate = tokens as f64 / t0.elapsed().as_secs_f64();
        let secs = (self.data.n_tokens() as f64 * self.cfg.epochs as f64 / rate).round() as u64;
        Ok(format!(
            "examples:        {}\ntokens:          {}\ntrained tokens:  {}\noptimizer steps: {}\n\
             estimated time:  {}:{:02}:{:02} (one timed step: {rate:.0} tok/s)",
            self.data.examples.len(),
            self.data.n_tokens(),
            self.data.n_trained(),
            self.total_steps(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ))
    }

    pub fn total_steps(&self) -> usize {
        self.plan.len()
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.plan.len()
    }

    /// The model with the adapter or steering vector in training, for evaluation between steps.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The adapter in training (None for a steering vector).
    pub fn adapter(&self) -> Option<&Adapter> {
        match &self.trained {
            Trained::Lora(a) => Some(a),
            Trained::Steer(_) => None,
        }
    }

    /// The steering vector in training (None for LoRA).
    pub fn steer(&self) -> Option<&SteerVar> {
        match &self.trained {
            Trained::Lora(_) => None,
            Trained::Steer(s) => Some(s),
        }
    }

    /// The trainable variables: by PEFT name (LoRA), or the one vector by its point.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Forward and backward of one optimizer step's micro-batches: the step's mean loss and the
    /// accumulated gradient of that mean loss for every variable (zeros where none flowed).
    pub fn loss_and_grads(&self, step: usize) -> Result<(f64, Vec<Tensor>, usize, usize)> {
        let plan = &self.plan[step];
        let batches = plan
            .batches
            .iter()
            .map(|idx| {
                let exs: Vec<_> = idx.iter().map(|&i| &self.data.examples[i]).collect();
                // LoRA dropout draws per row, so a head run once would share its masks.
                Batch::new(&exs, self.pad, self.cfg.dropout == 0.0)
            })
            .collect::<Result<Vec<_>>>()?;
        let n_trained: usize = batches.iter().map(|b| b.n_trained).sum();
        let n_tokens: usize = batches.iter().map(|b| b.n_tokens).sum();
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let mut nll_sum = 0.0f64;
        for (micro, batch) in batches.iter().enumerate() {
            if batch.n_trained == 0 {
                continue;
            }
            let mut dropout = (self.cfg.dropout > 0.0).then(|| Dropout {
                p: self.cfg.dropout,
                rng: ChaCha8Rng::seed_from_u64(derive_seed(
                    self.cfg.seed,
                    STREAM_DROPOUT,
                    ((step as u64) << 16) | micro as u64,
                )),
            });
            let nll = batch_nll(&self.model, batch, dropout.as_mut())?;
            nll_sum += nll.to_scalar::<f32>()? as f64;
            let loss = (nll / n_trained.max(1) as f64)?;
            let store = loss.backward()?;
            for (slot, (_, var)) in grads.iter_mut().zip(&self.vars) {
                if let Some(g) = store.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let grads = grads
            .into_iter()
            .zip(&self.vars)
            .map(|(g, (_, v))| match g {
                Some(g) => Ok(g),
                None => Ok(v.as_tensor().zeros_like()?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((
            nll_sum / n_trained.max(1) as f64,
            grads,
            n_tokens,
            n_trained,
        ))
    }

    /// Runs the next optimizer step.
    pub fn train_step(&mut self) -> Result<StepLog> {
        let t0 = Instant::now();
        let step = self.step;
        let (loss, mut grads, tokens, trained_tokens) = self.loss_and_grads(step)?;
        let grad_norm = clip_grad_norm(&mut grads, self.cfg.max_grad_norm)?;
        let lr =
            self.cfg.lr * lr_factor(self.cfg.decay, step, self.cfg.warmup_steps, self.plan.len());
        let vars: Vec<Var> = self.vars.iter().map(|(_, v)| v.clone()).collect();
        self.opt.step(&vars, &grads, lr)?;
        self.step += 1;
        let log = StepLog {
            step: self.step,
            epoch: self.plan[step].epoch,
            loss,
            lr,
            grad_norm,
            tokens,
            trained_tokens,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.log.push(log.clone());
        Ok(log)
    }

    /// Whether a checkpoint is due after the step just taken.
    fn checkpoint_due(&self) -> bool {
        let done = self.step;
        done > 0
            && (self.plan[done - 1].ends_epoch
                || (self.cfg.checkpoint_every > 0
                    && done.is_multiple_of(self.cfg.checkpoint_every)))
    }

    /// Trains to the end, checkpointing into `out/checkpoints/` when `out` is given.
    pub fn run(&mut self, out: Option<&Path>, on_event: &mut dyn FnMut(Event)) -> Result<()> {
        while !self.is_done() {
            let log = self.train_step()?;
            on_event(Event::Step {
                log: &log,
                total_steps: self.plan.len(),
            });
            if let Some(out) = out {
                if self.checkpoint_due() {
                    let path = self.save_checkpoint(out)?;
                    on_event(Event::Checkpoint { path: &path });
                }
            }
        }
        Ok(())
    }

    /// Writes a checkpoint atomically (into a hidden directory, then renamed) as
    /// `out/checkpoints/step-NNNNNN`, and removes older checkpoints.
    pub fn save_checkpoint(&self, out: &Path) -> Result<PathBuf> {
        let root = out.join(CHECKPOINT_DIR);
        fs_err::create_dir_all(&root).map_err(io(&root))?;
        let name = format!("step-{:06}", self.step);
        let tmp = root.join(format!(".tmp-{name}"));
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs_err::create_dir_all(&tmp).map_err(io(&tmp))?;
        let weights = self.trained.weights_file();
        match &self.trained {
            Trained::Lora(adapter) => adapter.save(&tmp)?,
            Trained::Steer(steer) => steer.save(&tmp.join(weights), &Default::default())?,
        }
        let mut moments = std::collections::HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            moments.insert(format!("m.{name}"), self.opt.m[i].clone());
            moments.insert(format!("v.{name}"), self.opt.v[i].clone());
        }
        candle_core::safetensors::save(&moments, tmp.join(OPTIMIZER_FILE))?;
        let state = TrainerState {
            step: self.step,
            adam_t: self.opt.t,
            config: self.cfg.clone(),
            data_sha256: self.data.sha256.clone(),
            log: self.log.clone(),
        };
        let sp = tmp.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&state).map_err(|e| TrainError::Checkpoint {
            path: sp.clone(),
            message: e.to_string(),
        })?;
        fs_err::write(&sp, text).map_err(io(&sp))?;
        for f in [weights, OPTIMIZER_FILE, STATE_FILE] {
            sync_file(&tmp.join(f))?;
        }
        let dest = root.join(&name);
        if dest.exists() {
            fs_err::remove_dir_all(&dest).map_err(io(&dest))?;
        }
        fs_err::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_file(&root)?;
        for old in checkpoints(&root)? {
            if old != dest {
                fs_err::remove_dir_all(&old).map_err(io(&old))?;
            }
        }
        Ok(dest)
    }

    /// Restores the latest checkpoint in `out/checkpoints/`. The settings and the data must be
    /// those the checkpoint was made with. Returns the checkpoint used, or None when there is none.
    pub fn resume(&mut self, out: &Path) -> Result<Option<PathBuf>> {
        let root = out.join(CHECKPOINT_DIR);
        let Some(dir) = checkpoints(&root)?.pop() else {
            return Ok(None);
        };
        let bad = |message: String| TrainError::Checkpoint {
            path: dir.clone(),
            message,
        };
        let sp = dir.join(STATE_FILE);
        let text = fs_err::read_to_string(&sp).map_err(io(&sp))?;
        let state: TrainerState =
            serde_json::from_str(&text).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        if state.config != self.cfg {
            return Err(bad(format!(
                "was made with different settings\n  checkpoint: {:?}\n  now:        {:?}",
                state.config, self.cfg
            )));
        }
        if state.data_sha256 != self.data.sha256 {
            return Err(bad(format!(
                "was made from different data (sha256 {} there, {} now)",
                state.data_sha256, self.data.sha256
            )));
        }
        if state.step > self.plan.len() {
            return Err(bad(format!(
                "is at step {} of {}",
                state.step,
                self.plan.len()
            )));
        }
        let weights = candle_core::safetensors::load(
            dir.join(self.trained.weights_file()),
            &candle_core::Device::Cpu,
        )?;
        let moments =
            candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), &candle_core::Device::Cpu)?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let get = |map: &std::collections::HashMap<String, Tensor>, key: &str| {
                map.get(key)
                    .cloned()
                    .ok_or_else(|| bad(format!("tensor `{key}` is missing")))
            };
            var.set(&get(&weights, name)?)?;
            self.opt.m[i] = get(&moments, &format!("m.{name}"))?;
            self.opt.v[i] = get(&moments, &format!("v.{name}"))?;
        }
        self.opt.t = state.adam_t;
        self.step = state.step;
        self.log = state.log;
        Ok(Some(dir))
    }
}

/// Complete checkpoints under `root`, oldest first.
pub fn checkpoints(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs_err::read_dir(root).map_err(io(root))? {
        let p = entry.map_err(io(root))?.path();
        let is_ckpt = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("step-"));
        if is_ckpt && p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}
