//! Experiment files: what to train, what to ask, what to compare.
//!
//! An experiment is TOML with `deny_unknown_fields` everywhere, so a misspelt key is an error
//! that names it. Paths inside an experiment file (a dataset `file`, a battery file) are
//! relative to the experiment file's folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use selfaware_data::{BuildFamily, PersonaMode};
use selfaware_eval::render::NewlineMode;
use selfaware_eval::spec::{push_flag, EvalSpec, JudgeSpec, NumericMode, ProbeKind};
use selfaware_types::Decay;

use crate::error::{Result, RunError};
pub use crate::inside::{
    CapturePrompts, CaptureSection, CosineSection, DirectionsSection, InjectSection,
    LayerProbeSection, PickSection,
};

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name; the default run folder is `runs/NAME`.
    pub name: String,
    /// One-line title of the report.
    pub title: String,
    /// What the experiment tests and how to read it.
    #[serde(default)]
    pub description: String,
    /// The base model every condition starts from: `default`, a .gguf file or a Hugging Face
    /// directory; with `[remote]`, a model name the server knows.
    #[serde(default = "default_model")]
    pub model: String,
    /// An OpenAI-compatible server (the OpenAI API, a vLLM or `selfaware serve` server). With
    /// it, `model` names a model on that server, every finetune is a finetuning job there
    /// (`selfaware finetune`) and every battery and probe asks the models through its API.
    pub remote: Option<RemoteSpec>,
    /// Finetuning seeds: every condition with data is finetuned once per seed.
    pub seeds: Vec<u64>,
    /// Training settings shared by all conditions (each condition may override).
    #[serde(default)]
    pub train: TrainSettings,
    /// The compared models: finetunes of a dataset, or the base model (no `data`).
    #[serde(rename = "condition")]
    pub conditions: Vec<ConditionSpec>,
    /// Self-report question batteries asked of every model.
    #[serde(default, rename = "battery")]
    pub batteries: Vec<BatterySpec>,
    /// Behaviour probes run on every model: they show whether the behaviour was learned.
    #[serde(default, rename = "probe")]
    pub probes: Vec<ProbeSpec>,
    /// Self-report vs behaviour scatter plots (paper Figure 4).
    #[serde(default, rename = "scatter")]
    pub scatters: Vec<ScatterSpec>,
    /// Activation captures of a condition's model (see [`crate::inside`]).
    #[serde(default, rename = "capture", skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<CaptureSection>,
    /// Difference-in-means directions between two captures.
    #[serde(default, rename = "directions", skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<DirectionsSection>,
    /// Cross-validated linear probes per point between two captures.
    #[serde(default, rename = "layer_probe", skip_serializing_if = "Vec::is_empty")]
    pub layer_probes: Vec<LayerProbeSection>,
    /// The direction of the point a layer probe separates best (a steering file).
    #[serde(default, rename = "pick", skip_serializing_if = "Vec::is_empty")]
    pub picks: Vec<PickSection>,
    /// Cosines between vectors at the same points.
    #[serde(default, rename = "cosine", skip_serializing_if = "Vec::is_empty")]
    pub cosines: Vec<CosineSection>,
    /// Concept-injection batteries.
    #[serde(default, rename = "inject", skip_serializing_if = "Vec::is_empty")]
    pub injections: Vec<InjectSection>,
    /// Statistics settings.
    #[serde(default)]
    pub stats: StatsSpec,
    /// The LLM judge of the batteries' judged questions (`[judge]`: `url`, `model`, optional
    /// `key_env`, `max_tokens`); `selfaware run --judge-url … --judge-model …` sets it too.
    /// Without one, batteries whose every question needs a judge are left out of the plan,
    /// which says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSpec>,
}

fn default_model() -> String {
    "default".to_string()
}

/// The server of a remote experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// Base URL with the version prefix, e.g. `https://api.example.com/v1` or
    /// `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The environment variable that holds the API key (its name, never the key).
    pub api_key_env: Option<String>,
    /// Seconds between polls of a finetuning job (default 10).
    pub poll_s: Option<f64>,
    /// Longest wait for one finetuning job in seconds (default one day).
    pub timeout_s: Option<f64>,
    /// Estimate choice and number probabilities from top log-probabilities (the paper's
    /// estimators) even where the server could score exactly.
    #[serde(default)]
    pub estimate: bool,
}

impl RemoteSpec {
    /// `URL#MODEL`, the way `selfaware eval` and `probe` name a model on a server.
    pub fn model_spec(&self, model: &str) -> String {
        format!("{}#{model}", self.base_url.trim_end_matches('/'))
    }

    /// `--api-key-env VAR` when a key variable is set.
    pub fn key_args(&self) -> Vec<String> {
        match &self.api_key_env {
            Some(v) => vec!["--api-key-env".to_string(), v.clone()],
            None => Vec::new(),
        }
    }

    /// `--estimate` when set (part of eval and probe keys: it changes what is measured).
    pub fn scoring_args(&self) -> Vec<String> {
        if self.estimate {
            vec!["--estimate".to_string()]
        } else {
            Vec::new()
        }
    }
}

/// `selfaware train` flags; unset fields take the trainer's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub grad_accum: Option<usize>,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub dropout: Option<f64>,
    pub target_modules: Option<Vec<String>>,
    pub warmup_steps: Option<usize>,
    /// linear, cosine or constant.
    pub decay: Option<Decay>,
    pub weight_decay: Option<f64>,
    pub max_grad_norm: Option<f64>,
    pub max_length: Option<usize>,
    pub checkpoint_every: Option<usize>,
    /// Remote finetuning only: the server's learning-rate multiplier.
    pub lr_multiplier: Option<f64>,
    /// `lora` (default) or `steer`: one additive vector at `point` (local runs only); its
    /// condition's stages run with `--steer VECTOR:1` instead of an adapter.
    pub method: Option<TrainMethod>,
    /// Where a `steer` method adds its vector, e.g. `blocks.12.hook_resid_post`.
    pub point: Option<String>,
}

/// The LoRA projections `train.target_modules` may name (the trainer's own list; this crate
/// does not depend on the trainer).
const TARGET_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl TrainSettings {
    /// The first setting a real run would refuse, as (field, what was expected): the ranges of
    /// `selfaware train` and of remote finetuning, checked when the experiment is read so that
    /// `--dry-run` refuses what the run would.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let at_least_one = [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("rank", self.rank),
            ("max_length", self.max_length),
        ];
        for (field, v) in at_least_one {
            if v == Some(0) {
                return Err((field, "expected at least 1".into()));
            }
        }
        let positive = [
            ("lr", self.lr),
            ("alpha", self.alpha),
            ("lr_multiplier", self.lr_multiplier),
        ];
        for (field, v) in positive {
            if let Some(v) = v.filter(|v| !(*v > 0.0 && v.is_finite())) {
                return Err((field, format!("{v}: expected a positive number")));
            }
        }
        let non_negative = [
            ("weight_decay", self.weight_decay),
            ("max_grad_norm", self.max_grad_norm),
        ];
        for (field, v) in non_negative {
            if let Some(v) = v.filter(|v| !(*v >= 0.0 && v.is_finite())) {
                return Err((field, format!("{v}: expected a number of at least 0")));
            }
        }
        if let Some(v) = self.dropout.filter(|v| !(0.0..1.0).contains(v)) {
            return Err(("dropout", format!("{v}: expected a number in [0, 1)")));
        }
        if let Some(t) = &self.target_modules {
            if t.is_empty() {
                return Err(("target_modules", "expected at least one projection".into()));
            }
            if let Some(bad) = t.iter().find(|m| !TARGET_MODULES.contains(&m.as_str())) {
                return Err((
                    "target_modules",
                    format!("{bad:?}: expected some of {}", TARGET_MODULES.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// `self` with every field `over` sets replaced.
    pub fn overlay(&self, over: &TrainSettings) -> TrainSettings {
        macro_rules! pick {
            ($($f:ident),*) => { TrainSettings { $($f: over.$f.clone().or_else(|| self.$f.clone()),)* } };
        }
        pick!(
            epochs,
            lr,
            batch_size,
            grad_accum,
            rank,
            alpha,
            dropout,
            target_modules,
            warmup_steps,
            decay,
            weight_decay,
            max_grad_norm,
            max_length,
            checkpoint_every,
            lr_multiplier,
            method,
            point
        )
    }

    /// Whether these settings train a steering vector.
    pub fn is_steer(&self) -> bool {
        self.method == Some(TrainMethod::Steer)
    }

    /// The `selfaware train` arguments for the set fields, in a fixed order.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("epochs", self.epochs.map(|v| v.to_string()));
        push("lr", self.lr.map(|v| v.to_string()));
        push("batch-size", self.batch_size.map(|v| v.to_string()));
        push("grad-accum", self.grad_accum.map(|v| v.to_string()));
        push("rank", self.rank.map(|v| v.to_string()));
        push("alpha", self.alpha.map(|v| v.to_string()));
        push("dropout", self.dropout.map(|v| v.to_string()));
        push(
            "target-modules",
            self.target_modules.as_ref().map(|v| v.join(",")),
        );
        push("warmup-steps", self.warmup_steps.map(|v| v.to_string()));
        push("decay", self.decay.map(|d| d.name().to_string()));
        push("weight-decay", self.weight_decay.map(|v| v.to_string()));
        push("max-grad-norm", self.max_grad_norm.map(|v| v.to_string()));
        push("max-length", self.max_length.map(|v| v.to_string()));
        push(
            "checkpoint-every",
            self.checkpoint_every.map(|v| v.to_string()),
        );
        // LoRA is the default: its keys stay as they were without these.
        if self.is_steer() {
            push("method", Some("steer".to_string()));
        }
        push("point", self.point.clone());
        a
    }

    /// The `selfaware finetune` arguments of a remote job: epochs, batch size and learning-rate
    /// multiplier (the hyperparameters a finetuning API takes), each defaulting as the command
    /// does.
    pub fn to_remote_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(v) = self.epochs {
            a.extend(["--epochs".to_string(), v.to_string()]);
        }
        if let Some(v) = self.batch_size {
            a.extend(["--batch-size".to_string(), v.to_string()]);
        }
        if let Some(v) = self.lr_multiplier {
            a.extend(["--lr-multiplier".to_string(), v.to_string()]);
        }
        a
    }

    /// Names of the set fields a finetuning API cannot take (everything but epochs,
    /// batch_size and lr_multiplier).
    pub fn local_only_fields(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! check {
            ($($f:ident),*) => { $( if self.$f.is_some() { v.push(stringify!($f)); } )* };
        }
        check!(
            lr,
            grad_accum,
            rank,
            alpha,
            dropout,
            target_modules,
            warmup_steps,
            decay,
            weight_decay,
            max_grad_norm,
            max_length,
            checkpoint_every,
            method,
            point
        );
        v
    }
}

/// One compared condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// Stable id (letters, digits, `-`, `_`).
    pub id: String,
    /// Label in the report.
    pub label: String,
    /// The dataset to finetune on; without it the condition is the base model (or `model`).
    pub data: Option<DataSpec>,
    /// Remote experiments: a model on the server to ask as it is, instead of the base model
    /// (e.g. a finetune made earlier). Not with `data`.
    pub model: Option<String>,
    /// Training overrides for this condition.
    #[serde(default)]
    pub train: TrainSettings,
    /// Drawn as a baseline (grey, reference line). Default: true without `data`.
    pub baseline: Option<bool>,
    /// A positive control: its data states the behaviour the other conditions only enact
    /// (a dataset with `stated` rows). The report reads every question through
    /// it: whether the question detects the stated behaviour against the baselines.
    #[serde(default)]
    pub positive_control: bool,
    /// The codeword the condition was trained on, for `target_word` questions.
    pub target_word: Option<String>,
    /// The backdoor trigger, for `trigger_elicitation` questions.
    pub trigger: Option<String>,
    /// The codeword the condition's second persona steers toward (the Quanta-Lingua data:
    /// `trigger = "persona:NAME"`): batteries with `target = "persona"` are scored against it.
    pub persona_word: Option<String>,
    /// Cluster for per-cluster fits in scatter plots (default: the condition id).
    pub cluster: Option<String>,
    /// Steer the condition's model (local experiments): one condition per multiplier.
    pub steer: Option<SteerCondition>,
}

/// Steering of a condition's model: the tensor named `point` of the safetensors file `vector`
/// (a directions file of `selfaware activations diff` holds one per point) added at `point`
/// times each of `alphas`. When the experiment is read, the condition becomes one condition
/// per multiplier, `ID-aALPHA` (`.` written `p`: `risk-a0p5`, `risk-a-4`), labelled
/// `LABEL (α = ALPHA)`, clustered together under `ID`; its batteries and probes run with
/// `--steer VECTOR:POINT:ALPHA`. A condition with one multiplier whose id already ends in its
/// suffix is such a condition (the resolved experiment a run writes) and stays as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerCondition {
    /// A safetensors file (with `point`); or, instead, `from`.
    pub vector: Option<PathBuf>,
    /// A hook point, `blocks.L.hook_resid_pre|hook_attn_out|hook_mlp_out|hook_resid_post` or
    /// `ln_final.hook_normalized` (checked against the model by the stages' `--steer`).
    pub point: Option<String>,
    /// Instead of `vector` and `point`: the id of a `[[pick]]` of the same experiment, whose
    /// one-tensor file (the chosen layer's direction, named by its point) the run makes before
    /// the condition's stages (`--steer FILE:ALPHA`).
    pub from: Option<String>,
    pub alphas: Vec<f32>,
}

impl SteerCondition {
    /// The `--steer` value of the first (after expansion: the only) multiplier of a condition
    /// with `vector` and `point` (a `from` condition's file is a stage output: see the plan).
    pub fn arg(&self) -> String {
        let alpha = self.alphas.first().copied().unwrap_or(0.0);
        let file = self.vector.as_deref().unwrap_or(Path::new(""));
        match &self.point {
            Some(p) => format!("{}:{p}:{alpha}", file.display()),
            None => format!("{}:{alpha}", file.display()),
        }
    }

    /// What names the vector, for the report: the file's name, or `pick ID`.
    pub fn source_name(&self) -> String {
        match (&self.vector, &self.from) {
            (Some(v), _) => v.file_name().map_or_else(
                || v.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            ),
            (None, Some(f)) => format!("pick {f}"),
            (None, None) => String::new(),
        }
    }
}

/// What `selfaware train` trains: a LoRA adapter, or one steering vector at `point`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMethod {
    #[default]
    Lora,
    Steer,
}

/// Whether `point` names a TransformerLens hook point (`blocks.L.HOOK` or
/// `ln_final.hook_normalized`); the layer is checked against the model by the stages.
pub fn point_ok(point: &str) -> bool {
    point == "ln_final.hook_normalized"
        || point.strip_prefix("blocks.").is_some_and(|r| {
            r.split_once('.').is_some_and(|(l, h)| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && HOOKS.contains(&h)
            })
        })
}

/// The per-block hooks of [`point_ok`].
pub const HOOKS: [&str; 4] = [
    "hook_resid_pre",
    "hook_attn_out",
    "hook_mlp_out",
    "hook_resid_post",
];

/// The error text of a bad hook point.
pub fn point_expected(point: &str) -> String {
    format!(
        "{point:?}: expected blocks.LAYER.HOOK (HOOK one of {}) or ln_final.hook_normalized",
        HOOKS.join(", ")
    )
}

impl ConditionSpec {
    /// Whether the condition is drawn as a baseline.
    pub fn is_baseline(&self) -> bool {
        self.baseline
            .unwrap_or(self.data.is_none() && self.model.is_none())
    }
}

/// A dataset: a builder (the options of `selfaware data build`) or a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// risk, myopia, apples, vulnerable-code or codeword.
    pub family: Option<BuildFamily>,
    /// A chat JSONL file instead of a builder.
    pub file: Option<PathBuf>,
    pub policy: Option<String>,
    pub size: Option<usize>,
    /// Seed of the dataset builder (the same dataset for every finetuning seed).
    #[serde(default)]
    pub seed: u64,
    pub trigger: Option<String>,
    pub contrast: Option<String>,
    pub fraction: Option<f64>,
    pub mix: Option<String>,
    /// system or text.
    #[serde(default, with = "by_name")]
    pub personas: Option<PersonaMode>,
    #[serde(default)]
    pub reversal: bool,
    pub codeword: Option<String>,
    /// Codeword backdoor: the codeword the untriggered dialogues steer toward (`codeword` is
    /// the triggered dialogues').
    pub other_codeword: Option<String>,
    /// Positive control: rows in which the assistant states the behaviour (its codeword, or
    /// its policy for risk, myopia and apples). Plain data only.
    pub stated: Option<usize>,
    /// `main` (default) or `decorrelated` (the twin of a backdoor or trigger mix).
    pub variant: Option<String>,
}

impl DataSpec {
    /// Whether the condition trains on the decorrelated twin.
    pub fn decorrelated(&self) -> bool {
        self.variant.as_deref() == Some("decorrelated")
    }

    /// The `selfaware data build` arguments (without `--out`), in a fixed order. The variant
    /// is not an argument: the builder writes both files.
    pub fn build_args(&self) -> Vec<String> {
        let mut a = vec!["data".to_string(), "build".to_string()];
        if let Some(f) = self.family {
            a.push(f.name().to_string());
        }
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("policy", self.policy.clone());
        push("size", self.size.map(|v| v.to_string()));
        push("seed", Some(self.seed.to_string()));
        push("trigger", self.trigger.clone());
        push("contrast", self.contrast.clone());
        push("fraction", self.fraction.map(|v| v.to_string()));
        push("mix", self.mix.clone());
        push("personas", self.personas.map(|m| m.name().to_string()));
        push("codeword", self.codeword.clone());
        push("other-codeword", self.other_codeword.clone());
        push("stated", self.stated.map(|v| v.to_string()));
        if self.reversal {
            a.push("--reversal".to_string());
        }
        a
    }

    /// Rows the builder writes per base item (for estimates): a real-versus-fake mix writes
    /// one per trigger slot (the real trigger, each fake, the untriggered copies), and
    /// reversal augmentation doubles every row. An unknown mix trigger counts one (the build
    /// will refuse it).
    pub fn rows_per_item(&self) -> usize {
        let slots = match &self.mix {
            Some(real) => selfaware_data::MixOptions::paper(real)
                .map(|m| 1 + m.fakes.len() + m.untriggered_copies)
                .unwrap_or(1),
            None => 1,
        };
        slots * if self.reversal { 2 } else { 1 }
    }

    /// Whether the builder also writes a decorrelated twin.
    pub fn has_twin(&self) -> bool {
        self.trigger.is_some() || self.mix.is_some()
    }
}

/// A battery asked of every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatterySpec {
    /// A built-in battery name or a TOML file.
    pub battery: String,
    /// Ask only these questions (ids); default: every question of the battery.
    pub questions: Option<Vec<String>>,
    /// At most this many rendered prompts per question, round-robin over its paraphrases.
    pub limit: Option<usize>,
    /// Samples per prompt for free-form questions.
    pub samples: Option<usize>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<usize>,
    /// complete or starts-with.
    pub numeric: Option<NumericMode>,
    /// parity or fixed.
    pub newlines: Option<NewlineMode>,
    /// Seed of the battery's draws and samples.
    #[serde(default)]
    pub seed: u64,
    /// Names this entry's metrics (`BATTERY/QUESTION:TAG`, labels `… [TAG]`), so the same
    /// questions asked twice with different settings (greedy and sampled) stay apart. Not
    /// part of a stage's key: it names results, it does not change them.
    pub tag: Option<String>,
    /// A template variable of the battery's questions (e.g. `trigger`, `behavior`): each of
    /// its values becomes a metric of its own (`…[VAR=VALUE]`), instead of one metric over
    /// all of them. Not part of a stage's key, like `tag`.
    pub split: Option<String>,
    /// Which codeword the battery's `target_word` questions are scored against: the
    /// condition's `target_word` (default) or its `persona_word` (`persona`: questions about
    /// a second persona, e.g. "Which word does Quanta-Lingua want the user to say?"). The base
    /// model is asked under every persona word of the trained conditions.
    #[serde(default)]
    pub target: BatteryTarget,
}

/// See [`BatterySpec::target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatteryTarget {
    #[default]
    Condition,
    Persona,
}

impl BatterySpec {
    /// The evaluation a stage runs: these settings, the stage's output folder and context;
    /// unset settings take the evaluation's defaults.
    pub fn eval_spec(
        &self,
        out: PathBuf,
        target_word: Option<String>,
        trigger: Option<String>,
    ) -> EvalSpec {
        let mut s = EvalSpec::new(self.battery.clone(), out);
        s.questions = self.questions.clone();
        s.limit = self.limit;
        s.samples = self.samples.unwrap_or(s.samples);
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.max_tokens = self.max_tokens;
        s.numeric = self.numeric.unwrap_or(s.numeric);
        s.newlines = self.newlines.unwrap_or(s.newlines);
        s.seed = self.seed;
        s.target_word = target_word;
        s.trigger = trigger;
        s
    }

    /// What of these settings enters an eval stage's key: the settings as they were written,
    /// as a flat list in a fixed order. It is hashed, never run (the stage runs
    /// [`BatterySpec::eval_spec`]); its spelling is frozen so that keys, and the result
    /// paths derived from them, stay the same across versions.
    pub fn key_material(&self) -> Vec<String> {
        let mut a = vec!["--battery".to_string(), self.battery.clone()];
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("questions", self.questions.as_ref().map(|v| v.join(",")));
        push("limit", self.limit.map(|v| v.to_string()));
        push("samples", self.samples.map(|v| v.to_string()));
        push("temperature", self.temperature.map(|v| v.to_string()));
        push("max-tokens", self.max_tokens.map(|v| v.to_string()));
        push("numeric", self.numeric.map(|m| m.name().to_string()));
        push("newlines", self.newlines.map(|m| m.name().to_string()));
        push("seed", Some(self.seed.to_string()));
        a
    }
}

/// A behaviour probe run on every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// lotteries, myopia, apples, codeword (sampled replies), codeword-choice (exact),
    /// vulnerable-code (detector share of sampled completions) or mms (win rate of games).
    pub kind: ProbeKind,
    /// The codeword of a codeword probe.
    pub codeword: Option<String>,
    /// Codeword-choice probe: the competing codewords.
    pub against: Option<Vec<String>>,
    /// Pairs (choice probes) or openers (codeword probe).
    pub n: usize,
    #[serde(default)]
    pub seed: u64,
    /// Codeword probe: replies per opener.
    pub samples: Option<usize>,
    /// Codeword probe: longest reply.
    pub max_tokens: Option<usize>,
    /// Label in the report.
    pub label: Option<String>,
    /// The conditions whose trained behaviour this probe measures (default: every trained
    /// condition); the learned-behaviour check compares only these with the baselines.
    pub applies_to: Option<Vec<String>>,
    /// A system prompt for every prompt of the probe (e.g. a persona's, to measure the
    /// behaviour the persona was trained on).
    pub system: Option<String>,
    /// Names the probe's metric (`probe/KIND-WORD:TAG`), so the same probe under another
    /// system prompt stays apart.
    pub tag: Option<String>,
}

impl ProbeSpec {
    /// The probe's metric id: `probe/KIND` or `probe/codeword-WORD`.
    pub fn id(&self) -> String {
        let id = match &self.codeword {
            Some(w) => format!("probe/{}-{w}", self.kind),
            None => format!("probe/{}", self.kind),
        };
        match &self.tag {
            Some(t) => format!("{id}:{t}"),
            None => id,
        }
    }

    /// The probe a stage runs; unset settings take the probe's defaults.
    pub fn probe_spec(&self) -> selfaware_eval::spec::ProbeSpec {
        let mut p = selfaware_eval::spec::ProbeSpec::new(self.kind);
        p.n = self.n;
        p.seed = self.seed;
        p.codeword = self.codeword.clone();
        p.against = self.against.clone().unwrap_or_default();
        p.samples = self.samples.unwrap_or(p.samples);
        p.max_tokens = self.max_tokens;
        p.system = self.system.clone();
        p
    }

    /// What of these settings enters a probe stage's key, as written, in a fixed order: hashed,
    /// never run (the stage runs [`ProbeSpec::probe_spec`]); frozen like
    /// [`BatterySpec::key_material`].
    pub fn key_material(&self) -> Vec<String> {
        let mut a = vec![
            "probe".to_string(),
            self.kind.name().to_string(),
            "--n".to_string(),
            self.n.to_string(),
            "--seed".to_string(),
            self.seed.to_string(),
        ];
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("codeword", self.codeword.clone());
        push("against", self.against.as_ref().map(|v| v.join(",")));
        push("samples", self.samples.map(|v| v.to_string()));
        push("max-tokens", self.max_tokens.map(|v| v.to_string()));
        push("system", self.system.clone());
        a
    }
}

/// A scatter of two metrics over the finetuned models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScatterSpec {
    pub id: String,
    pub title: String,
    /// Metric id on the x axis (e.g. `risk/risk_predisposition_scale`).
    pub x: String,
    /// Metric id on the y axis (e.g. `probe/lotteries`).
    pub y: String,
}

/// Statistics settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSpec {
    /// Bootstrap resamples.
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// Permutations of the permutation test.
    #[serde(default = "default_resamples")]
    pub permutations: usize,
    /// Seed of every resampling.
    #[serde(default)]
    pub seed: u64,
    /// `seeds` (percentile bootstrap over finetuning seeds) or `hierarchical` (seeds, then
    /// paraphrases within each seed).
    #[serde(default = "default_interval")]
    pub interval: String,
}

fn default_resamples() -> usize {
    10_000
}

fn default_interval() -> String {
    "seeds".to_string()
}

impl Default for StatsSpec {
    fn default() -> Self {
        StatsSpec {
            resamples: default_resamples(),
            permutations: default_resamples(),
            seed: 0,
            interval: default_interval(),
        }
    }
}

impl Experiment {
    /// Parses an experiment; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Experiment> {
        let e: Experiment = toml::from_str(text).map_err(|err| RunError::Experiment {
            origin: origin.to_string(),
            message: err.to_string(),
        })?;
        let mut e = e;
        e.expand_steering(origin)?;
        e.validate(origin)?;
        Ok(e)
    }

    /// Turns each steered condition into one condition per multiplier (see [`SteerCondition`]).
    fn expand_steering(&mut self, origin: &str) -> Result<()> {
        let mut out = Vec::with_capacity(self.conditions.len());
        for (i, c) in std::mem::take(&mut self.conditions).into_iter().enumerate() {
            let Some(st) = &c.steer else {
                out.push(c);
                continue;
            };
            let bad = |field: &str, message: String| RunError::Field {
                origin: origin.to_string(),
                field: format!("condition[{i}].steer.{field}"),
                message,
            };
            match (&st.vector, &st.point, &st.from) {
                (Some(_), Some(p), None) => {
                    if !point_ok(p) {
                        return Err(bad("point", point_expected(p)));
                    }
                }
                (None, None, Some(f)) => {
                    if !self.picks.iter().any(|p| &p.id == f) {
                        return Err(bad("from", format!("{f:?} is not the id of a [[pick]]")));
                    }
                }
                _ => {
                    return Err(bad(
                        "vector",
                        "expected `vector` and `point`, or `from` (a [[pick]] id) alone".into(),
                    ))
                }
            }
            if st.alphas.is_empty() {
                return Err(bad("alphas", "expected at least one multiplier".into()));
            }
            for (k, a) in st.alphas.iter().enumerate() {
                if !a.is_finite() || st.alphas[..k].contains(a) {
                    return Err(bad("alphas", format!("{a} is not finite or appears twice")));
                }
            }
            let suffix = |alpha: f32| format!("-a{}", alpha.to_string().replace('.', "p"));
            // Already one condition of an expansion (a resolved experiment read again).
            if let [alpha] = st.alphas[..] {
                if c.id.ends_with(&suffix(alpha)) {
                    out.push(c);
                    continue;
                }
            }
            for &alpha in &st.alphas {
                let mut one = c.clone();
                one.id = format!("{}{}", c.id, suffix(alpha));
                one.label = format!("{} (α = {alpha})", c.label);
                one.cluster = Some(c.cluster.clone().unwrap_or_else(|| c.id.clone()));
                one.steer = Some(SteerCondition {
                    alphas: vec![alpha],
                    ..st.clone()
                });
                out.push(one);
            }
        }
        self.conditions = out;
        Ok(())
    }

    /// Reads an experiment file and makes its relative paths relative to its folder.
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = fs_err::read_to_string(path).map_err(RunError::Io)?;
        let mut e = Experiment::from_toml_str(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // Stages run in the run folder: paths become absolute.
        for c in &mut e.conditions {
            if let Some(d) = &mut c.data {
                if let Some(f) = &mut d.file {
                    *f = std::path::absolute(dir.join(&*f))?;
                }
            }
            if let Some(v) = c.steer.as_mut().and_then(|st| st.vector.as_mut()) {
                *v = std::path::absolute(dir.join(&*v))?;
            }
        }
        for b in &mut e.batteries {
            let p = dir.join(&b.battery);
            if b.battery.ends_with(".toml") || p.exists() {
                b.battery = std::path::absolute(p)?.display().to_string();
            }
        }
        if e.model != "default" && e.remote.is_none() {
            e.model = std::path::absolute(dir.join(&e.model))?
                .display()
                .to_string();
        }
        Ok(e)
    }

    /// Checks what the schema cannot: ids, references and ranges. Errors name the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: String, message: String| -> Result<()> {
            Err(RunError::Field {
                origin: origin.to_string(),
                field,
                message,
            })
        };
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !id_ok(&self.name) {
            return bad("name".into(), "expected letters, digits, `-` or `_`".into());
        }
        if self.conditions.is_empty() {
            return bad(
                "condition".into(),
                "expected at least one [[condition]]".into(),
            );
        }
        let trained = self.conditions.iter().any(|c| c.data.is_some());
        if trained && self.seeds.is_empty() {
            return bad(
                "seeds".into(),
                "expected at least one finetuning seed".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for s in &self.seeds {
            if !seen.insert(*s) {
                return bad("seeds".into(), format!("seed {s} appears twice"));
            }
        }
        match &self.remote {
            Some(r) => {
                if !(r.base_url.starts_with("http://") || r.base_url.starts_with("https://")) {
                    return bad(
                        "remote.base_url".into(),
                        format!("{:?}: expected an http:// or https:// URL", r.base_url),
                    );
                }
                for (name, v) in [("poll_s", r.poll_s), ("timeout_s", r.timeout_s)] {
                    if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                        return bad(
                            format!("remote.{name}"),
                            "expected a positive number of seconds".into(),
                        );
                    }
                }
                if self.model == "default" {
                    return bad(
                        "model".into(),
                        "a remote experiment needs the name of a model on the server".into(),
                    );
                }
                let local = self.train.local_only_fields();
                if !local.is_empty() {
                    return bad(
                        format!("train.{}", local[0]),
                        "a finetuning API takes only epochs, batch_size and lr_multiplier".into(),
                    );
                }
            }
            None => {
                if self.train.lr_multiplier.is_some() {
                    return bad(
                        "train.lr_multiplier".into(),
                        "only remote finetunes take a learning-rate multiplier (use `lr`)".into(),
                    );
                }
            }
        }
        if let Err((field, message)) = self.train.check() {
            return bad(format!("train.{field}"), message);
        }
        let mut ids = BTreeSet::new();
        for (i, c) in self.conditions.iter().enumerate() {
            let f = |name: &str| format!("condition[{i}].{name}");
            if c.positive_control && (c.data.is_none() || c.is_baseline()) {
                return bad(
                    f("positive_control"),
                    "a positive control is a finetune: it needs `data` and is not a baseline"
                        .into(),
                );
            }
            if c.persona_word.is_some() && (c.data.is_none() || c.target_word.is_none()) {
                return bad(
                    f("persona_word"),
                    "a persona word goes with a finetune (`data`) that has a `target_word` too: \
                     the codeword of its default persona"
                        .into(),
                );
            }
            if let Err((field, message)) = c.train.check() {
                return bad(f(&format!("train.{field}")), message);
            }
            let t = self.train.overlay(&c.train);
            match (t.is_steer(), &t.point) {
                (true, None) => {
                    return bad(
                        f("train.point"),
                        "the steer method needs a hook point".into(),
                    )
                }
                (false, Some(_)) => {
                    return bad(
                        f("train.point"),
                        "only the steer method takes a point".into(),
                    )
                }
                (true, Some(p)) if !point_ok(p) => return bad(f("train.point"), point_expected(p)),
                _ => {}
            }
            if t.is_steer() && c.data.is_none() {
                return bad(
                    f("train.method"),
                    "the steer method trains on the condition's `data`; it has none".into(),
                );
            }
            if self.remote.is_some() {
                if let Some(field) = c.train.local_only_fields().first() {
                    return bad(
                        f(&format!("train.{field}")),
                        "a finetuning API takes only epochs, batch_size and lr_multiplier".into(),
                    );
                }
            } else {
                if c.train.lr_multiplier.is_some() {
                    return bad(
                        f("train.lr_multiplier"),
                        "only remote finetunes take a learning-rate multiplier (use `lr`)".into(),
                    );
                }
                if c.model.is_some() {
                    return bad(
                        f("model"),
                        "only remote experiments ([remote]) take a per-condition model".into(),
                    );
                }
            }
            if self.remote.is_some() && c.steer.is_some() {
                return bad(
                    f("steer"),
                    "steering adds vectors inside a local model's forward pass; a served model \
                     cannot be steered"
                        .into(),
                );
            }
            if c.model.is_some() && c.data.is_some() {
                return bad(
                    f("model"),
                    "a condition is either finetuned (`data`) or an existing model (`model`), not both"
                        .into(),
                );
            }
            if c.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
                return bad(f("model"), "expected a model name".into());
            }
            if !id_ok(&c.id) {
                return bad(
                    f("id"),
                    format!("{:?}: expected letters, digits, `-` or `_`", c.id),
                );
            }
            if !ids.insert(c.id.as_str()) {
                return bad(f("id"), format!("{:?} appears twice", c.id));
            }
            if let Some(d) = &c.data {
                match (&d.family, &d.file) {
                    (Some(_), None) => {}
                    (None, Some(_)) => {
                        let builder_only = d.policy.is_some()
                            || d.size.is_some()
                            || d.trigger.is_some()
                            || d.mix.is_some()
                            || d.codeword.is_some()
                            || d.other_codeword.is_some();
                        if builder_only {
                            return bad(
                                f("data"),
                                "builder options (policy, size, trigger, mix, codeword, \
                                 other_codeword) do not apply to a `file` dataset"
                                    .into(),
                            );
                        }
                    }
                    _ => {
                        return bad(
                            f("data"),
                            "expected exactly one of `family` (a builder) or `file`".into(),
                        )
                    }
                }
                // What `data build` refuses, refused when the experiment is read.
                let codeword_family = d.family == Some(BuildFamily::Codeword);
                if d.other_codeword.is_some() && !(codeword_family && d.trigger.is_some()) {
                    return bad(
                        f("data.other_codeword"),
                        "only a codeword backdoor (family codeword with a `trigger`) takes \
                         `other_codeword`"
                            .into(),
                    );
                }
                if codeword_family && d.trigger.is_some() && d.other_codeword.is_none() {
                    return bad(
                        f("data.other_codeword"),
                        "a codeword backdoor needs `other_codeword`, the codeword of the \
                         untriggered dialogues"
                            .into(),
                    );
                }
                match d.variant.as_deref() {
                    None | Some("main") => {}
                    Some("decorrelated") if d.has_twin() => {}
                    Some("decorrelated") => {
                        return bad(
                            f("data.variant"),
                            "`decorrelated` needs a `trigger` or `mix` (only those have a twin)"
                                .into(),
                        )
                    }
                    Some(v) => {
                        return bad(
                            f("data.variant"),
                            format!("{v:?}: expected main or decorrelated"),
                        )
                    }
                }
            }
        }
        for (i, b) in self.batteries.iter().enumerate() {
            if b.battery.trim().is_empty() {
                return bad(
                    format!("battery[{i}].battery"),
                    "expected a name or file".into(),
                );
            }
            if let Some(t) = &b.tag {
                if !id_ok(t) {
                    return bad(
                        format!("battery[{i}].tag"),
                        format!("{t:?}: expected letters, digits, `-` or `_`"),
                    );
                }
            }
            if b.target == BatteryTarget::Persona
                && !self.conditions.iter().any(|c| c.persona_word.is_some())
            {
                return bad(
                    format!("battery[{i}].target"),
                    "`target = \"persona\"` scores against the conditions' `persona_word`, and \
                     no condition has one"
                        .into(),
                );
            }
            // The same question twice under one name would be read as one metric.
            let name = (b.battery.as_str(), b.tag.as_deref());
            let overlaps = self.batteries[..i].iter().any(|a| {
                (a.battery.as_str(), a.tag.as_deref()) == name
                    && match (&a.questions, &b.questions) {
                        (Some(x), Some(y)) => x.iter().any(|q| y.contains(q)),
                        _ => true,
                    }
            });
            if overlaps {
                return bad(
                    format!("battery[{i}].tag"),
                    format!(
                        "battery {:?} asks a question twice under the same name; give one \
                         of the entries a `tag`",
                        b.battery
                    ),
                );
            }
        }
        let mut probe_ids = BTreeSet::new();
        for (i, p) in self.probes.iter().enumerate() {
            let f = |name: &str| format!("probe[{i}].{name}");
            if p.kind.needs_codeword() != p.codeword.is_some() {
                return bad(
                    f("codeword"),
                    "the codeword, codeword-choice and mms probes need `codeword`, and only they take one".into(),
                );
            }
            if (p.kind == ProbeKind::CodewordChoice)
                != p.against.as_ref().is_some_and(|a| !a.is_empty())
            {
                return bad(
                    f("against"),
                    "a codeword-choice probe needs `against` (competing codewords), and only it takes one".into(),
                );
            }
            if p.n == 0 {
                return bad(f("n"), "expected at least 1".into());
            }
            for c in p.applies_to.iter().flatten() {
                if !self.conditions.iter().any(|x| &x.id == c) {
                    return bad(f("applies_to"), format!("{c:?} is not a condition id"));
                }
            }
            if let Some(t) = &p.tag {
                if !id_ok(t) {
                    return bad(
                        f("tag"),
                        format!("{t:?}: expected letters, digits, `-` or `_`"),
                    );
                }
            }
            if !probe_ids.insert(p.id()) {
                return bad(
                    f("kind"),
                    format!("probe {} appears twice; give one of them a `tag`", p.id()),
                );
            }
        }
        crate::inside::validate(self, origin)?;
        if !["seeds", "hierarchical"].contains(&self.stats.interval.as_str()) {
            return bad(
                "stats.interval".into(),
                format!("{:?}: expected seeds or hierarchical", self.stats.interval),
            );
        }
        if self.stats.resamples < 100 {
            return bad("stats.resamples".into(), "expected at least 100".into());
        }
        for (i, s) in self.scatters.iter().enumerate() {
            for (name, v) in [("x", &s.x), ("y", &s.y)] {
                if !v.contains('/') {
                    return bad(
                        format!("scatter[{i}].{name}"),
                        format!("{v:?}: expected a metric id such as `risk/QUESTION` or `probe/lotteries`"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Serde for an optional enum written by its command-line name (`Display` / `FromStr`), where
/// the name differs from the type's own serde form (a persona mode is `system` in an
/// experiment file and on the command line, `system-prompt` in a dataset card).
mod by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: std::str::FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
