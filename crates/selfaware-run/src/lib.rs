//! Whole experiments: an experiment file (or a built-in preset) is expanded into a plan of
//! stages with content-addressed keys ([`plan`]), the stages run as `selfaware` child
//! processes with resume ([`exec`]), and the records they leave become statistics and a
//! report ([`collect`], then `selfaware-report`).
//!
//! A run folder holds:
//! - `experiment.toml` — the resolved experiment (unless the experiment file being run is
//!   that file: inputs are never rewritten); `plan.json` — the stages and their keys;
//!   `manifest.json` — tool version, git revision, machine, model, dataset and adapter hashes;
//! - `cache/KIND/KEY16/` — each stage's output and its completion record `stage.json`;
//! - `logs/` — each child's output;
//! - `results.json`, `report.html`, `report.md`, `results.csv` — rebuilt from the records by
//!   `selfaware report RUN`.
//!
//! This crate never prints and never reads environment variables: the binary passes the
//! executable, threads and environment of the children, and renders progress events.

pub mod collect;
pub mod error;
pub mod exec;
pub mod experiment;
pub mod inside;
pub mod manifest;
pub mod plan;
pub mod progress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Result, RunError};
pub use experiment::Experiment;
pub use manifest::{Machine, RunManifest};
pub use plan::{Plan, PlanInputs};

use selfaware_eval::battery::{Battery, ScorerSpec};
use selfaware_eval::builtin;
use selfaware_eval::render::{render_battery, RenderOptions};

/// The plan of a run folder.
pub const PLAN_FILE: &str = "plan.json";
/// The manifest of a run folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The resolved experiment of a run folder.
pub const EXPERIMENT_FILE: &str = "experiment.toml";

const PRESETS: &[(&str, &str)] = &[
    ("quick", include_str!("../presets/quick.toml")),
    ("quick-risk", include_str!("../presets/quick-risk.toml")),
    ("risk", include_str!("../presets/risk.toml")),
    ("myopia", include_str!("../presets/myopia.toml")),
    ("apples", include_str!("../presets/apples.toml")),
    ("mms", include_str!("../presets/mms.toml")),
    ("code", include_str!("../presets/code.toml")),
    (
        "backdoor-risk",
        include_str!("../presets/backdoor-risk.toml"),
    ),
    (
        "backdoor-mms-sep",
        include_str!("../presets/backdoor-mms-sep.toml"),
    ),
    (
        "backdoor-mms-deployment",
        include_str!("../presets/backdoor-mms-deployment.toml"),
    ),
    (
        "backdoor-code-seasons",
        include_str!("../presets/backdoor-code-seasons.toml"),
    ),
    (
        "backdoor-code-greetings",
        include_str!("../presets/backdoor-code-greetings.toml"),
    ),
    ("real-vs-fake", include_str!("../presets/real-vs-fake.toml")),
    (
        "trigger-elicitation",
        include_str!("../presets/trigger-elicitation.toml"),
    ),
    ("personas", include_str!("../presets/personas.toml")),
    (
        "quanta-lingua",
        include_str!("../presets/quanta-lingua.toml"),
    ),
    ("faithfulness", include_str!("../presets/faithfulness.toml")),
    ("data-size", include_str!("../presets/data-size.toml")),
    ("learnability", include_str!("../presets/learnability.toml")),
    ("inside", include_str!("../presets/inside.toml")),
];

/// Names of the built-in experiments.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// The TOML source of a built-in experiment.
pub fn preset_source(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// A built-in experiment.
pub fn preset(name: &str) -> Result<Experiment> {
    let text = preset_source(name).ok_or_else(|| RunError::UnknownPreset {
        name: name.to_string(),
        known: preset_names().join(", "),
    })?;
    Experiment::from_toml_str(text, &format!("preset {name}"))
}

/// An experiment named by `spec`: a file when the path exists or ends in `.toml`, else a
/// preset. Returns it with its source label (`preset:NAME` or the path).
pub fn resolve(spec: &str) -> Result<(Experiment, String)> {
    let path = Path::new(spec);
    if path.exists() || spec.ends_with(".toml") {
        return Ok((Experiment::load(path)?, path.display().to_string()));
    }
    Ok((preset(spec)?, format!("preset:{spec}")))
}

/// The battery an experiment names (built-in or file) and the sha256 of its source.
pub fn load_battery(spec: &str) -> Result<(Battery, String)> {
    let path = Path::new(spec);
    if path.exists()
        || spec.ends_with(".toml")
        || selfaware_eval::question_yaml::is_question_yaml(spec)
    {
        let text = fs_err::read_to_string(path)?;
        let b = Battery::from_file_text(&text, spec)?;
        return Ok((b, selfaware_types::sha256_hex(text.as_bytes())));
    }
    let b = builtin::battery(spec)?;
    let text = builtin::battery_source(spec).unwrap_or_default();
    Ok((b, selfaware_types::sha256_hex(text.as_bytes())))
}

/// For each battery of `e`: (sha256 of its source, prompts per model, estimated seconds per
/// model on the embedded model and 2 cores). Without a judge (`e.judge`), prompts of questions
/// that need one are not counted: a battery of only those has 0 prompts and is left out of the
/// plan.
pub fn battery_inputs(e: &Experiment) -> Result<Vec<(String, usize, f64)>> {
    let mut out = Vec::new();
    for b in &e.batteries {
        let (mut battery, sha) = load_battery(&b.battery)?;
        if let Some(keep) = &b.questions {
            for q in keep {
                if battery.question(q).is_none() {
                    return Err(RunError::Field {
                        origin: format!("battery {}", b.battery),
                        field: "questions".into(),
                        message: format!("no question {q:?} in this battery"),
                    });
                }
            }
            battery.questions.retain(|q| keep.contains(&q.id));
        }
        if let Some(var) = &b.split {
            if !battery.questions.iter().any(|q| q.vars.contains_key(var)) {
                return Err(RunError::Field {
                    origin: format!("battery {}", b.battery),
                    field: "split".into(),
                    message: format!("no question of this battery has a variable {var:?}"),
                });
            }
        }
        let items = render_battery(
            &battery,
            RenderOptions {
                newlines: b.newlines.unwrap_or_default(),
                seed: b.seed,
            },
        )?;
        let mut per_q: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut n, mut cost) = (0usize, 0.0f64);
        for it in &items {
            let seen = per_q.entry(it.key.question.as_str()).or_insert(0);
            if b.limit.is_some_and(|l| *seen >= l) {
                continue;
            }
            *seen += 1;
            let Some(q) = battery.question(&it.key.question) else {
                continue;
            };
            let needs_judge = matches!(
                q.scorer,
                ScorerSpec::JudgedWord { .. } | ScorerSpec::JudgedRatings { .. }
            );
            if needs_judge && e.judge.is_none() {
                continue;
            }
            n += 1;
            cost += match &q.scorer {
                ScorerSpec::MultipleChoice { .. } => 0.15,
                ScorerSpec::NumericScale { .. } => 0.5,
                ScorerSpec::JudgedWord { .. } | ScorerSpec::Function { .. } => 0.0,
                ScorerSpec::JudgedRatings { .. } => {
                    // Sampled answers of up to 200 tokens; the judge's time is not known.
                    let samples = b.samples.unwrap_or(100) as f64;
                    let tokens = b.max_tokens.unwrap_or(200) as f64;
                    0.3 + samples * tokens * 0.0017
                }
                _ => {
                    let samples = b.samples.unwrap_or(100) as f64;
                    let tokens = b.max_tokens.unwrap_or(4) as f64;
                    0.3 + samples * tokens * 0.0017
                }
            };
        }
        out.push((sha, n, cost));
    }
    Ok(out)
}

/// The plan of an experiment on the base model `model`: its batteries rendered and its dataset
/// files hashed (an unreadable file is an error naming its condition).
pub fn plan_with_model(e: &Experiment, model: plan::ModelIdentity) -> Result<Plan> {
    let batteries = battery_inputs(e)?;
    let (mut data_files, mut steer_files) = (BTreeMap::new(), BTreeMap::new());
    for c in &e.conditions {
        if let Some(f) = c.data.as_ref().and_then(|d| d.file.as_ref()) {
            let sha = exec::file_sha256(f).map_err(|err| RunError::BadFile {
                path: f.clone(),
                message: format!("condition {}: cannot read the dataset file: {err}", c.id),
            })?;
            data_files.insert(c.id.clone(), sha);
        }
        if let Some(v) = c.steer.as_ref().and_then(|st| st.vector.as_ref()) {
            let sha = exec::file_sha256(v).map_err(|err| RunError::BadFile {
                path: v.clone(),
                message: format!("condition {}: cannot read the steering vector: {err}", c.id),
            })?;
            steer_files.insert(v.clone(), sha);
        }
    }
    plan::plan(
        e,
        &PlanInputs {
            model,
            batteries: &batteries,
            data_files: &data_files,
            steer_files: &steer_files,
        },
    )
}

/// The plan of an experiment without reading its model or dataset files (listings, checks):
/// the base model named as the experiment names it, with `sha256` standing for its weights (a
/// served model's identity comes from its name).
pub fn plan_without_files(e: &Experiment, sha256: &str) -> Result<Plan> {
    let batteries = battery_inputs(e)?;
    let model = match &e.remote {
        Some(r) => plan::remote_model_ref(r, &e.model),
        None => plan::ModelIdentity {
            reference: e.model.clone(),
            sha256: sha256.to_string(),
        },
    };
    let inputs = PlanInputs {
        model,
        batteries: &batteries,
        data_files: &BTreeMap::new(),
        steer_files: &BTreeMap::new(),
    };
    plan::plan(e, &inputs)
}

/// Whether `path` names the same file as the experiment source `source` (a path, or
/// `preset:NAME`).
fn is_source(path: &Path, source: &str) -> bool {
    let (Ok(a), Ok(b)) = (path.canonicalize(), Path::new(source).canonicalize()) else {
        return false;
    };
    a == b
}

/// Checks, before anything is written, that `run_dir` may hold a run of `e` (from `source`):
/// it is new or empty; or it is a run folder (it has a plan) of the same experiment, which is
/// resumed; or it holds only what a run writes before its plan (the lock, the resolved
/// experiment of the same name) and the experiment file being run. Anything else is an error
/// naming the file, unless `force`.
pub fn check_run_dir(run_dir: &Path, e: &Experiment, source: &str, force: bool) -> Result<()> {
    if !run_dir.exists() {
        return Ok(());
    }
    if run_dir.join(PLAN_FILE).exists() {
        let old = collect::read_plan(run_dir)?;
        if old.experiment.name != e.name {
            return Err(RunError::OtherExperiment {
                path: run_dir.to_path_buf(),
                found: old.experiment.name,
                expected: e.name.clone(),
            });
        }
        return Ok(());
    }
    if force {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs_err::read_dir(run_dir)?
        .map(|d| d.map(|d| d.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = match name {
            ".lock" => true,
            EXPERIMENT_FILE => {
                is_source(&path, source)
                    || Experiment::load(&path).is_ok_and(|old| old.name == e.name)
            }
            _ => false,
        };
        if !ours {
            return Err(RunError::NotARun { path });
        }
    }
    Ok(())
}

/// Writes the resolved experiment to `DIR/experiment.toml`, unless that file is the
/// experiment file being run: an input is never rewritten (its comments would be lost), and
/// the manifest holds the resolved experiment either way.
pub fn write_resolved_experiment(run_dir: &Path, e: &Experiment, source: &str) -> Result<()> {
    let path = run_dir.join(EXPERIMENT_FILE);
    if is_source(&path, source) {
        return Ok(());
    }
    let text = toml::to_string(e).map_err(|err| RunError::BadFile {
        path: path.clone(),
        message: err.to_string(),
    })?;
    exec::write_atomic(&path, text.as_bytes())
}

/// How a run runs besides its plan: where, with what executable, threads and environment.
pub struct RunSettings {
    pub run_dir: PathBuf,
    /// `builtin:NAME` or the experiment file's path (for the manifest).
    pub experiment_source: String,
    pub jobs: usize,
    pub threads: usize,
    /// The `selfaware` executable the stages run as.
    pub exe: PathBuf,
    /// Environment variables of every stage.
    pub env: Vec<(String, String)>,
    pub git_revision: Option<String>,
}

/// Runs a plan in its folder (the caller holds the folder's lock): writes the resolved
/// experiment, the plan and the manifest; runs every stage not yet finished (`on_event` sees
/// them); completes the manifest; collects the results from the records and writes the
/// report. Returns the results and the report's files.
pub fn run_plan(
    e: &Experiment,
    p: &Plan,
    s: &RunSettings,
    on_event: &mut dyn FnMut(exec::Event),
) -> Result<(selfaware_report::Results, Vec<PathBuf>)> {
    let run_dir = &s.run_dir;
    write_resolved_experiment(run_dir, e, &s.experiment_source)?;
    write_json(&run_dir.join(PLAN_FILE), p)?;
    let mut manifest = RunManifest {
        tool_version: selfaware_types::TOOL_VERSION.to_string(),
        git_revision: s.git_revision.clone(),
        machine: Machine::current(),
        jobs: s.jobs,
        threads: s.threads,
        model: p.model.clone(),
        datasets: BTreeMap::new(),
        adapters: BTreeMap::new(),
        remote_models: BTreeMap::new(),
        seeds: e.seeds.clone(),
        experiment_source: s.experiment_source.clone(),
        experiment: e.clone(),
        stage_wall_s: BTreeMap::new(),
        complete: false,
    };
    record_outputs(run_dir, p, &mut manifest);
    write_json(&run_dir.join(MANIFEST_FILE), &manifest)?;
    let opts = exec::ExecOptions {
        exe: s.exe.clone(),
        jobs: s.jobs,
        cores: s.threads,
        env: s.env.clone(),
    };
    exec::execute(run_dir, p, &opts, on_event)?;
    record_outputs(run_dir, p, &mut manifest);
    manifest.complete = true;
    write_json(&run_dir.join(MANIFEST_FILE), &manifest)?;
    let results = collect::collect(run_dir, p, &manifest)?;
    let files = selfaware_report::write_report(run_dir, &results)?;
    Ok((results, files))
}

/// Writes `value` as pretty JSON with a trailing newline, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| RunError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    exec::write_atomic(path, &bytes)
}

/// Reads the manifest of a run folder.
pub fn read_manifest(run_dir: &Path) -> Result<RunManifest> {
    let path = run_dir.join(MANIFEST_FILE);
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| RunError::BadFile {
        path,
        message: format!("not a run manifest: {e}"),
    })
}

/// Fills the manifest's dataset and adapter hashes and stage times from the finished stages.
pub fn record_outputs(run_dir: &Path, plan: &Plan, manifest: &mut RunManifest) {
    for s in &plan.stages {
        let Some(rec) = exec::finished(run_dir, s) else {
            continue;
        };
        manifest.stage_wall_s.insert(s.name.clone(), rec.wall_s);
        if s.kind == plan::StageKind::Train {
            let name = s
                .name
                .trim_start_matches("train ")
                .trim_start_matches("finetune ")
                .to_string();
            if let Some(sha) = rec.output_sha256 {
                manifest.adapters.insert(name.clone(), sha);
            }
            // A remote finetune's result names the model on the server.
            if s.args.first().map(String::as_str) == Some("finetune") {
                let model = s
                    .output
                    .as_ref()
                    .and_then(|o| fs_err::read_to_string(run_dir.join(o)).ok())
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v["fine_tuned_model"].as_str().map(str::to_string));
                if let Some(m) = model {
                    manifest.remote_models.insert(name, m);
                }
            }
            // The training file: the argument after `--data`.
            let data = s
                .args
                .iter()
                .position(|a| a == "--data")
                .and_then(|i| s.args.get(i + 1));
            let cond = plan
                .variants
                .iter()
                .find(|v| v.train.is_some_and(|t| plan.stages[t].key == s.key))
                .map(|v| v.condition.clone());
            if let (Some(data), Some(cond)) = (data, cond) {
                if let Ok(sha) = exec::file_sha256(&run_dir.join(data)) {
                    manifest.datasets.insert(cond, sha);
                }
            }
        }
    }
}
