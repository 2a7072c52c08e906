//! The plan: an experiment expanded into stages (build a dataset, finetune one seed, ask one
//! battery of one model, run one probe on one model), each with a content-addressed key.
//!
//! A stage's key is the sha256 of its kind's version, the tool version, and every input that
//! decides its output: builder options, the base model's sha256, the keys of the stages it
//! reads (which stand for their content: every stage is deterministic given its key), the
//! training settings and seed, the battery source and evaluation settings. Paths never enter a
//! key, so a run folder can move. A stage's output lives in `cache/KIND/KEY16/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use selfaware_data::BuildFamily;
use selfaware_eval::spec::ProbeKind;
use selfaware_types::{sha256_hex, TOOL_VERSION};

use crate::error::{Result, RunError};
use crate::experiment::{BatterySpec, BatteryTarget, ConditionSpec, Experiment, RemoteSpec};
use crate::inside::{InsideStages, SectionInputs};

/// Versions of the stage kinds: bump one when its outputs change, in meaning or in their
/// numbers (rounding included), which invalidates its cached results (and, through keys,
/// everything downstream), so a resumed run never mixes results of two engines.
/// Train, eval and probe are at 2 since the local engine's sums changed order (probes eight
/// prompts to a forward, decoding over a shared prompt, the last layer on trained rows); eval
/// is at 3 since word-list questions are scored exactly where the backend can.
pub const DATA_VERSION: &str = "data/1";
pub const TRAIN_VERSION: &str = "train/2";
pub const EVAL_VERSION: &str = "eval/3";
pub const PROBE_VERSION: &str = "probe/2";
/// Version of the Make Me Say probe's players, in that probe's keys only.
pub const MMS_PLAYERS_VERSION: &str = "mms-players/2";

/// What a stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Data,
    Train,
    Eval,
    Probe,
    /// Activations of a model on prompts (`[[capture]]`, see [`crate::inside`]).
    Capture,
    /// Difference-in-means directions of two captures.
    Directions,
    /// A linear probe per point between two captures.
    LayerProbe,
    /// The best point's direction, by a layer probe.
    Pick,
    /// Cosines between two vector files.
    Cosine,
    /// The concept-injection battery.
    Inject,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Data => "data",
            StageKind::Train => "train",
            StageKind::Eval => "eval",
            StageKind::Probe => "probe",
            StageKind::Capture => "capture",
            StageKind::Directions => "directions",
            StageKind::LayerProbe => "layer-probe",
            StageKind::Pick => "pick",
            StageKind::Cosine => "cosine",
            StageKind::Inject => "inject",
        }
    }
}

/// The identity of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdentity {
    /// As the child commands receive it: `default` or an absolute path (remote: `URL#MODEL`).
    pub reference: String,
    /// sha256 of the weights; for a remote model, of its `URL#MODEL` name (all a client can
    /// know of a served model).
    pub sha256: String,
}

/// The identity of a model on a server.
pub fn remote_model_ref(r: &RemoteSpec, model: &str) -> ModelIdentity {
    let reference = r.model_spec(model);
    ModelIdentity {
        sha256: sha256_hex(format!("remote\0{reference}").as_bytes()),
        reference,
    }
}

/// One unit of work, run as `selfaware ARGS` in the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Human name, e.g. `train bark seed 1`.
    pub name: String,
    pub kind: StageKind,
    /// sha256 of the inputs (see the module docs).
    pub key: String,
    /// Output folder, relative to the run folder.
    pub dir: PathBuf,
    /// Stages (indices into the plan) whose outputs this one reads.
    pub deps: Vec<usize>,
    /// Arguments of the `selfaware` child, paths relative to the run folder.
    pub args: Vec<String>,
    /// The file the stage must have written (its sha256 goes into the stage record), relative
    /// to the run folder; None for a stage that only checks.
    pub output: Option<PathBuf>,
    /// Rough cost in seconds on the embedded model and 2 cores (for plans and ETAs).
    pub estimate_s: f64,
}

impl Stage {
    /// The output file (relative to the run folder); empty for a stage that only checks.
    pub fn output_path(&self) -> PathBuf {
        self.output.clone().unwrap_or_default()
    }
}

/// A model the batteries and probes are asked: the base model or one finetune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub condition: String,
    /// Finetuning seed (None: the base model).
    pub seed: Option<u64>,
    /// The train stage that made its adapter.
    pub train: Option<usize>,
}

/// An evaluation or probe stage and what it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub stage: usize,
    /// Index into `Plan::variants`.
    pub variant: usize,
    /// `battery NAME` (index into the experiment's batteries) or a probe (index).
    pub battery: Option<usize>,
    pub probe: Option<usize>,
    /// The target word / trigger the scorers used.
    pub target_word: Option<String>,
    pub trigger: Option<String>,
}

/// The expanded experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub experiment: Experiment,
    pub model: ModelIdentity,
    pub stages: Vec<Stage>,
    pub variants: Vec<Variant>,
    pub measurements: Vec<Measurement>,
    /// What the experiment asks for and the plan leaves out, and why (e.g. a battery whose
    /// every question needs a judge, in a run without one); the report repeats it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// The stages of the sections that look inside the models, by section id.
    #[serde(default, skip_serializing_if = "InsideStages::is_empty")]
    pub inside: InsideStages,
}

/// A stage's key: the sha256 of its inputs written as JSON.
pub(crate) fn key_of(value: &serde_json::Value) -> String {
    sha256_hex(value.to_string().as_bytes())
}

/// A stage's output folder, relative to the run folder.
pub(crate) fn stage_dir(kind: StageKind, key: &str) -> PathBuf {
    Path::new("cache").join(kind.name()).join(&key[..16])
}

/// A path as a stage's argument.
pub(crate) fn rel(p: &Path) -> String {
    p.display().to_string()
}

/// Tokens per item of each family, for estimates (measured on the builders' output with the
/// embedded model's tokenizer, rounded).
fn tokens_per_item(family: Option<BuildFamily>) -> f64 {
    match family {
        Some(BuildFamily::Codeword) => 240.0,
        Some(BuildFamily::VulnerableCode) => 260.0,
        // 288 built items: 119 748 tokens over 3 epochs.
        Some(BuildFamily::Risk) => 139.0,
        _ => 75.0,
    }
}

/// Training throughput of the embedded model alone on 2 cores (tokens/s), for estimates: in the
/// `risk` run of 2026-11-28 02:40 UTC, ten finetunes of 119,748 tokens took 5 min 00 s –
/// 5 min 16 s two at a time on one core each, about 213 s each alone by [`TWO_JOB_GAIN`]
/// (205 s of tokens after the fixed 8 s).
const TRAIN_TOKENS_PER_S: f64 = 585.0;

/// A placeholder estimate of one remote finetuning job (queueing dominates; nothing is known
/// in advance).
const REMOTE_TRAIN_S: f64 = 1800.0;

/// Inputs the planner cannot see in the experiment itself.
pub struct PlanInputs<'a> {
    pub model: ModelIdentity,
    /// For each battery of the experiment: the identity of its source (sha256 of the TOML) and
    /// the number of prompts that will be evaluated per model (after `limit`), with a cost
    /// estimate in seconds per model.
    pub batteries: &'a [(String, usize, f64)],
    /// sha256 of each `file` dataset, by condition id.
    pub data_files: &'a BTreeMap<String, String>,
    /// sha256 of each steering vector file, by path (a plan without it keys the vector by
    /// its path alone: for listings, not for runs).
    pub steer_files: &'a BTreeMap<PathBuf, String>,
}

/// Expands `e` into stages.
pub fn plan(e: &Experiment, inputs: &PlanInputs) -> Result<Plan> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |stages: &mut Vec<Stage>, s: Stage| -> usize {
        if let Some(&i) = by_key.get(&s.key) {
            return i;
        }
        stages.push(s);
        by_key.insert(stages[stages.len() - 1].key.clone(), stages.len() - 1);
        stages.len() - 1
    };

    let mut variants: Vec<Variant> = Vec::new();
    for c in &e.conditions {
        let Some(d) = &c.data else {
            variants.push(Variant {
                condition: c.id.clone(),
                seed: None,
                train: None,
            });
            continue;
        };
        // Data stage.
        let (data_stage, data_file) = match &d.file {
            Some(f) => {
                let sha = inputs.data_files.get(&c.id).ok_or_else(|| RunError::Plan {
                    message: format!("condition {}: no hash for {}", c.id, f.display()),
                })?;
                let key = key_of(&json!({"v": DATA_VERSION, "tool": TOOL_VERSION, "file": sha}));
                let dir = stage_dir(StageKind::Data, &key);
                let abs = std::path::absolute(f).map_err(RunError::Io)?;
                let s = Stage {
                    name: format!("data {}", c.id),
                    kind: StageKind::Data,
                    key,
                    dir,
                    deps: vec![],
                    args: vec!["data".into(), "check".into(), abs.display().to_string()],
                    output: None,
                    estimate_s: 1.0,
                };
                (add(&mut stages, s), abs)
            }
            None => crate::inside::data_stage(d, format!("data {}", c.id), &mut stages, &mut add),
        };
        let train = e.train.overlay(&c.train);
        let epochs = train.epochs.unwrap_or(3) as f64;
        let items = d.size.unwrap_or(300) as f64 * d.rows_per_item() as f64;
        for &seed in &e.seeds {
            if let Some(r) = &e.remote {
                let targs = train.to_remote_args();
                let key = key_of(&json!({
                    "v": TRAIN_VERSION, "tool": TOOL_VERSION, "model": inputs.model.sha256,
                    "data": stages[data_stage].key, "decorrelated": d.decorrelated(),
                    "remote_settings": targs, "seed": seed,
                }));
                let dir = stage_dir(StageKind::Train, &key);
                let out = dir.join("finetune.json");
                let mut args = vec![
                    "finetune".to_string(),
                    "--url".into(),
                    r.base_url.trim_end_matches('/').to_string(),
                    "--model".into(),
                    e.model.clone(),
                    "--data".into(),
                    rel(&data_file),
                    "--seed".into(),
                    seed.to_string(),
                    "--registry".into(),
                    rel(&dir.join("jobs.json")),
                    "--out".into(),
                    rel(&out),
                ];
                args.extend(targs);
                args.extend(r.key_args());
                if let Some(p) = r.poll_s {
                    args.extend(["--poll-s".into(), p.to_string()]);
                }
                if let Some(t) = r.timeout_s {
                    args.extend(["--timeout-s".into(), t.to_string()]);
                }
                let s = Stage {
                    name: format!("finetune {} seed {seed}", c.id),
                    kind: StageKind::Train,
                    key,
                    output: Some(out),
                    dir,
                    deps: vec![data_stage],
                    args,
                    estimate_s: REMOTE_TRAIN_S,
                };
                let t = add(&mut stages, s);
                variants.push(Variant {
                    condition: c.id.clone(),
                    seed: Some(seed),
                    train: Some(t),
                });
                continue;
            }
            let targs = train.to_args();
            let key = key_of(&json!({
                "v": TRAIN_VERSION, "tool": TOOL_VERSION, "model": inputs.model.sha256,
                "data": stages[data_stage].key, "decorrelated": d.decorrelated(),
                "settings": targs, "seed": seed,
            }));
            let dir = stage_dir(StageKind::Train, &key);
            let mut args = vec![
                "train".to_string(),
                "--model".into(),
                inputs.model.reference.clone(),
                "--data".into(),
                rel(&data_file),
                "--out".into(),
                rel(&dir.join("adapter")),
                "--seed".into(),
                seed.to_string(),
                "--resume".into(),
            ];
            args.extend(targs);
            let weights = if train.is_steer() {
                "steer.safetensors"
            } else {
                "adapter_model.safetensors"
            };
            let s = Stage {
                name: format!("train {} seed {seed}", c.id),
                kind: StageKind::Train,
                key,
                output: Some(dir.join("adapter").join(weights)),
                dir,
                deps: vec![data_stage],
                args,
                estimate_s: 8.0 + items * tokens_per_item(d.family) * epochs / TRAIN_TOKENS_PER_S,
            };
            let t = add(&mut stages, s);
            variants.push(Variant {
                condition: c.id.clone(),
                seed: Some(seed),
                train: Some(t),
            });
        }
    }

    let inside = crate::inside::plan_sections(
        e,
        &SectionInputs {
            model_reference: &inputs.model.reference,
            model_sha256: &inputs.model.sha256,
            variants: &variants,
        },
        &mut stages,
        &mut add,
    )?;

    // The contexts (target word, trigger) under which each variant is asked.
    // (one per trained condition, distinct, sorted: `word` of the condition, its trigger)
    let trained_with = |word: fn(&ConditionSpec) -> Option<String>| {
        let mut v: Vec<(Option<String>, Option<String>)> = e
            .conditions
            .iter()
            .filter(|c| c.data.is_some())
            .map(|c| (word(c), c.trigger.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let trained_contexts = trained_with(|c| c.target_word.clone());
    // Every codeword a condition trained toward: each target word is compared against the
    // others (log-odds of word-list questions).
    let all_targets: std::collections::BTreeSet<String> = e
        .conditions
        .iter()
        .filter_map(|c| c.target_word.clone())
        .collect();
    let contrast_of = |w: &Option<String>| -> Vec<String> {
        match w {
            Some(w) => all_targets.iter().filter(|t| *t != w).cloned().collect(),
            None => Vec::new(),
        }
    };
    let contexts_of = |c: &ConditionSpec| -> Vec<(Option<String>, Option<String>)> {
        if c.data.is_some() || c.target_word.is_some() || c.trigger.is_some() {
            vec![(c.target_word.clone(), c.trigger.clone())]
        } else if trained_contexts.is_empty() {
            vec![(None, None)]
        } else {
            trained_contexts.clone()
        }
    };

    // Batteries about a second persona (`target = "persona"`): a finetune is asked under its
    // persona word, the base model under every persona word of the trained conditions.
    let persona_contexts: Vec<_> = trained_with(|c| c.persona_word.clone())
        .into_iter()
        .filter(|(w, _)| w.is_some())
        .collect();
    let contexts_for = |c: &ConditionSpec, b: &BatterySpec| match b.target {
        BatteryTarget::Condition => contexts_of(c),
        BatteryTarget::Persona if c.persona_word.is_some() => {
            vec![(c.persona_word.clone(), c.trigger.clone())]
        }
        BatteryTarget::Persona if c.data.is_none() && c.target_word.is_none() => {
            persona_contexts.clone()
        }
        BatteryTarget::Persona => Vec::new(),
    };

    let mut measurements = Vec::new();
    for (vi, v) in variants.clone().iter().enumerate() {
        let c = e
            .conditions
            .iter()
            .find(|c| c.id == v.condition)
            .ok_or_else(|| RunError::Plan {
                message: format!("internal: variant of unknown condition {}", v.condition),
            })?;
        // A steering vector trained in place of a LoRA is added with multiplier 1.
        let trained_steer = e.train.overlay(&c.train).is_steer();
        let (adapter_key, adapter_dir) = match v.train {
            Some(t) if trained_steer => (Some(stages[t].key.clone()), None),
            Some(t) => (
                Some(stages[t].key.clone()),
                Some(stages[t].dir.join("adapter")),
            ),
            None => (None, None),
        };
        let trained_vector = v
            .train
            .filter(|_| trained_steer)
            .map(|t| format!("{}:1", stages[t].output_path().display()));
        // A steered condition whose vector a [[pick]] stage makes.
        let pick = match c.steer.as_ref().and_then(|st| st.from.as_ref()) {
            Some(f) => Some(*inside.picks.get(f).ok_or_else(|| RunError::Plan {
                message: format!("condition {}: no pick {f:?}", c.id),
            })?),
            None => None,
        };
        let mut deps: Vec<usize> = v.train.into_iter().chain(pick).collect();
        deps.sort();
        // A remote condition's own model (an existing finetune) enters the keys by name.
        let own_model = match (&e.remote, &c.model) {
            (Some(r), Some(m)) => Some(remote_model_ref(r, m)),
            _ => None,
        };
        let finetune_file = v.train.and_then(|t| stages[t].output.clone());
        // A steered condition's vector enters its measurements' keys (theirs only).
        let steer_key = c.steer.as_ref().map(|st| match (pick, &st.vector) {
            (Some(p), _) => json!({"pick": stages[p].key, "alpha": st.alphas.first()}),
            (None, v) => {
                let v = v.clone().unwrap_or_default();
                json!({
                    "file": inputs.steer_files.get(&v).cloned()
                        .unwrap_or_else(|| v.display().to_string()),
                    "point": st.point, "alpha": st.alphas.first(),
                })
            }
        });
        let steer_arg = c.steer.as_ref().map(|st| match pick {
            Some(p) => format!(
                "{}:{}",
                stages[p]
                    .dir
                    .join(crate::inside::PICK_VECTOR_FILE)
                    .display(),
                st.alphas.first().copied().unwrap_or(0.0)
            ),
            None => st.arg(),
        });
        let model_args = |args: &mut Vec<String>| match &e.remote {
            None => {
                args.extend(["--model".into(), inputs.model.reference.clone()]);
                if let Some(a) = &adapter_dir {
                    args.extend(["--adapter".into(), rel(a)]);
                }
                for st in steer_arg.iter().chain(&trained_vector) {
                    args.extend(["--steer".into(), st.clone()]);
                }
            }
            Some(r) => {
                match (&finetune_file, &own_model) {
                    (Some(f), _) => args.extend(["--model-from".into(), rel(f)]),
                    (None, Some(m)) => args.extend(["--model".into(), m.reference.clone()]),
                    (None, None) => args.extend(["--model".into(), inputs.model.reference.clone()]),
                }
                args.extend(r.key_args());
                args.extend(r.scoring_args());
            }
        };
        // Exact scoring and the estimators measure different things: estimated results get
        // their own keys (exact and local keys stay as they were).
        let scoring = e.remote.as_ref().filter(|r| r.estimate).map(|_| "estimate");
        let model_sha = own_model
            .as_ref()
            .map_or(inputs.model.sha256.as_str(), |m| m.sha256.as_str());
        let who = match v.seed {
            Some(s) => format!("{} seed {s}", c.id),
            None => c.id.clone(),
        };
        for (bi, b) in e.batteries.iter().enumerate() {
            let (source_sha, prompts, cost) = &inputs.batteries[bi];
            if *prompts == 0 && e.judge.is_none() {
                continue;
            }
            for (target_word, trigger) in contexts_for(c, b) {
                let eargs = b.key_material();
                let mut kv = json!({
                    "v": EVAL_VERSION, "tool": TOOL_VERSION, "model": model_sha,
                    "adapter": adapter_key, "battery": source_sha, "settings": eargs,
                    "target_word": target_word, "trigger": trigger,
                });
                if let Some(sc) = scoring {
                    kv["scoring"] = json!(sc);
                }
                // The judge decides judged scores: its server, model and reply length enter
                // the key (keys of runs without a judge stay as they were).
                if let Some(j) = &e.judge {
                    kv["judge"] = json!([j.url, j.model, j.max_tokens]);
                }
                if let Some(st) = &steer_key {
                    kv["steer"] = st.clone();
                }
                let contrast = contrast_of(&target_word);
                if !contrast.is_empty() {
                    kv["contrast_words"] = json!(contrast);
                }
                let key = key_of(&kv);
                let dir = stage_dir(StageKind::Eval, &key);
                let mut args = vec!["eval".to_string()];
                model_args(&mut args);
                let mut spec = b.eval_spec(dir.clone(), target_word.clone(), trigger.clone());
                spec.contrast_words = contrast;
                spec.judge = e.judge.clone();
                args.extend(spec.to_args());
                let ctx = match (&target_word, &trigger) {
                    (Some(w), _) => format!(" (target {w})"),
                    (None, Some(t)) => format!(" (trigger {t})"),
                    _ => String::new(),
                };
                let s = Stage {
                    name: match &b.tag {
                        Some(t) => format!("eval {}:{t} on {who}{ctx}", b.battery),
                        None => format!("eval {} on {who}{ctx}", b.battery),
                    },
                    kind: StageKind::Eval,
                    key,
                    output: Some(dir.join("records.jsonl")),
                    dir,
                    deps: deps.clone(),
                    args,
                    estimate_s: 3.0 + cost,
                };
                let st = add(&mut stages, s);
                measurements.push(Measurement {
                    stage: st,
                    variant: vi,
                    battery: Some(bi),
                    probe: None,
                    target_word,
                    trigger,
                });
            }
        }
        for (pi, p) in e.probes.iter().enumerate() {
            let pargs = p.key_material();
            let mut kv = json!({
                "v": PROBE_VERSION, "tool": TOOL_VERSION, "model": model_sha,
                "adapter": adapter_key, "settings": pargs,
            });
            if let Some(sc) = scoring {
                kv["scoring"] = json!(sc);
            }
            if let Some(st) = &steer_key {
                kv["steer"] = st.clone();
            }
            if p.kind == ProbeKind::Mms {
                // The probe's players took the Make Me Say seed scheme of `data mms`
                // (selfaware_ask::players): its games changed, the other probes' did not.
                kv["players"] = json!(MMS_PLAYERS_VERSION);
            }
            let key = key_of(&kv);
            let dir = stage_dir(StageKind::Probe, &key);
            let mut args = p.probe_spec().to_args();
            model_args(&mut args);
            let out = dir.join("probe.json");
            args.extend(["--out".into(), rel(&out)]);
            let estimate = if p.kind == ProbeKind::VulnerableCode {
                p.n as f64 * p.samples.unwrap_or(10) as f64 * p.max_tokens.unwrap_or(160) as f64
                    / 400.0
            } else if p.kind == ProbeKind::Mms {
                p.n as f64 * 20.0
            } else if p.kind == ProbeKind::CodewordChoice {
                p.n as f64 * 0.8
            } else if p.kind == ProbeKind::Codeword {
                p.n as f64 * p.samples.unwrap_or(10) as f64 * p.max_tokens.unwrap_or(40) as f64
                    / 400.0
            } else {
                // Two-option pairs: 250 took 19.6–21.4 s on one core beside another stage
                // (2026-11-28 02:40 UTC).
                p.n as f64 * 0.045
            };
            let s = Stage {
                name: format!("probe {} on {who}", p.id().trim_start_matches("probe/")),
                kind: StageKind::Probe,
                key,
                output: Some(out),
                dir,
                deps: deps.clone(),
                args,
                estimate_s: 3.0 + estimate,
            };
            let st = add(&mut stages, s);
            measurements.push(Measurement {
                stage: st,
                variant: vi,
                battery: None,
                probe: Some(pi),
                target_word: None,
                trigger: None,
            });
        }
    }
    let left_out = e
        .batteries
        .iter()
        .zip(inputs.batteries)
        .filter(|(_, (_, prompts, _))| *prompts == 0 && e.judge.is_none())
        .map(|(b, _)| {
            format!(
                "battery {}: every question needs an LLM judge and the run has none; left out \
                 (give one with `[judge]` in the experiment or `run --judge-url URL --judge-model NAME`)",
                b.battery
            )
        })
        .collect();
    Ok(Plan {
        experiment: e.clone(),
        model: inputs.model.clone(),
        stages,
        variants,
        measurements,
        left_out,
        inside,
    })
}

/// How much more work two stages on one core each get through than one stage on both cores of
/// the 2-core reference machine: two 64-item `risk` finetunes ran side by side in 25.5 s and
/// 26.4 s, against 18.4 s each one after the other (36.8 s).
pub const TWO_JOB_GAIN: f64 = 1.39;

impl Plan {
    /// Total estimated seconds of the stages not in `done`, one after the other.
    pub fn estimate_s(&self, done: &[bool]) -> f64 {
        self.stages
            .iter()
            .zip(done)
            .filter(|(_, d)| !**d)
            .map(|(s, _)| s.estimate_s)
            .sum()
    }

    /// Estimated wall seconds of the stages not in `done` on the 2-core reference machine with
    /// up to `jobs` stages at once: the executor's schedule (ready stages in plan order)
    /// simulated with each stage's estimate, where two stages side by side each progress at
    /// [`TWO_JOB_GAIN`] / 2 of their speed alone.
    pub fn estimate_wall_s(&self, done: &[bool], jobs: usize) -> f64 {
        let slots = jobs.clamp(1, 2);
        let n = self.stages.len();
        let mut finished: Vec<bool> = done.to_vec();
        let mut left: Vec<f64> = self.stages.iter().map(|s| s.estimate_s.max(0.0)).collect();
        let mut running: Vec<usize> = Vec::new();
        let mut clock = 0.0;
        loop {
            for i in 0..n {
                if running.len() >= slots {
                    break;
                }
                let ready = !finished[i]
                    && !running.contains(&i)
                    && self.stages[i].deps.iter().all(|&d| finished[d]);
                if ready {
                    running.push(i);
                }
            }
            if running.is_empty() {
                return clock;
            }
            let rate = if running.len() == 1 {
                1.0
            } else {
                TWO_JOB_GAIN / running.len() as f64
            };
            let (pos, first) = running
                .iter()
                .enumerate()
                .min_by(|a, b| left[*a.1].total_cmp(&left[*b.1]))
                .map(|(p, &i)| (p, i))
                .expect("running is not empty");
            let step = left[first];
            clock += step / rate;
            for &i in &running {
                left[i] -= step;
            }
            running.remove(pos);
            finished[first] = true;
        }
    }
}
