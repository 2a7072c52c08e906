//! Looking inside the models, as experiment sections that become stages: activation captures
//! of a condition's model (`[[capture]]`), difference-in-means directions between two captures
//! (`[[directions]]`), a cross-validated linear probe per point between two captures
//! (`[[layer_probe]]`), the direction of the point a probe separates best, written as a
//! one-tensor steering file (`[[pick]]`, which a steered condition names with
//! `steer = { from = ID, alphas = [...] }`), cosines between vectors at the same points
//! (`[[cosine]]`) and the concept-injection battery (`[[inject]]`).
//!
//! Each section is typed (`deny_unknown_fields`); each becomes one stage running a
//! `selfaware activations …` child, keyed like every other stage: the kind's version, the tool
//! version and every input that decides the output, with the keys of the stages it reads
//! standing for their files. Sections refer to each other and to conditions by id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use selfaware_types::{sha256_hex, TOOL_VERSION};

use crate::error::{Result, RunError};
use crate::experiment::{point_expected, point_ok, DataSpec, Experiment};
use crate::plan::{key_of, rel, stage_dir, Stage, StageKind, Variant};

/// Versions of the stage kinds of this module (see [`crate::plan::DATA_VERSION`]).
pub const CAPTURE_VERSION: &str = "capture/1";
pub const DIRECTIONS_VERSION: &str = "directions/1";
pub const LAYER_PROBE_VERSION: &str = "layer-probe/1";
/// The pick's criterion is part of its version: a changed criterion is a changed output.
pub const PICK_VERSION: &str = "pick/1";
pub const COSINE_VERSION: &str = "cosine/1";
/// The built-in concept-injection battery (`selfaware-activations/data/concept_injection.toml`)
/// is part of this version: bump it when that file changes.
pub const INJECT_VERSION: &str = "inject/1";

/// Activations of one condition's model (its finetune of the experiment's first seed, or the
/// base model) on a set of prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub id: String,
    /// A condition id: the base model or a LoRA finetune (its first seed).
    pub condition: String,
    pub prompts: CapturePrompts,
    /// Comma-separated hook points; `blocks.*.HOOK` for every layer.
    pub points: String,
    /// last, all or answer (default last).
    #[serde(default = "default_positions")]
    pub positions: String,
}

fn default_positions() -> String {
    "last".to_string()
}

/// The prompts of a capture: a built-in battery's rendered prompts, or a dataset built for it
/// (its conversations; `last` reads the token before each final answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturePrompts {
    pub battery: Option<String>,
    /// Seed of the battery's rendering draws.
    #[serde(default)]
    pub seed: u64,
    /// A builder dataset (`family` and its options, as a condition's `data`).
    pub data: Option<DataSpec>,
}

/// `mean(a) − mean(b)` per point of two captures (ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionsSection {
    pub id: String,
    pub a: String,
    pub b: String,
    /// Label in the report.
    pub label: Option<String>,
}

/// A cross-validated logistic probe per point telling capture `a`'s rows from `b`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerProbeSection {
    pub id: String,
    pub a: String,
    pub b: String,
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Inverse L2 regularisation strength (scikit-learn's C).
    #[serde(default = "default_c")]
    pub c: f64,
    /// Seed of the fold assignment.
    #[serde(default)]
    pub seed: u64,
    pub label: Option<String>,
}

fn default_folds() -> usize {
    5
}

fn default_c() -> f64 {
    1.0
}

/// The direction (of `directions`) at the point where the probe `probe` is most accurate: a
/// criterion fixed before the run, never the effect it is used to show. Ties go to the tied
/// layer nearest the middle of the probed layers (the lower on equal distance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickSection {
    pub id: String,
    pub directions: String,
    pub probe: String,
}

/// The cosine of two vectors at every point both hold. `a` and `b` each name a
/// `[[directions]]`, a `[[pick]]` or a condition trained with the steer method (its first
/// seed's vector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineSection {
    pub id: String,
    pub label: String,
    pub a: String,
    pub b: String,
}

/// The concept-injection battery (the built-in one) on a condition's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectSection {
    pub id: String,
    /// A condition id: the base model or a LoRA finetune (its first seed).
    pub condition: String,
    pub point: String,
    pub alphas: Vec<f32>,
    /// Control words scored beside each concept's own word.
    #[serde(default = "default_controls")]
    pub controls: usize,
    /// Seed of the control words' draw and of the bootstrap.
    #[serde(default)]
    pub seed: u64,
}

fn default_controls() -> usize {
    9
}

/// The stages of the sections, by section id (indices into the plan's stages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsideStages {
    pub captures: BTreeMap<String, usize>,
    pub directions: BTreeMap<String, usize>,
    pub layer_probes: BTreeMap<String, usize>,
    pub picks: BTreeMap<String, usize>,
    pub cosines: BTreeMap<String, usize>,
    pub injections: BTreeMap<String, usize>,
}

impl InsideStages {
    pub fn is_empty(&self) -> bool {
        *self == InsideStages::default()
    }
}

/// File names of the stages' outputs.
pub const CAPTURE_FILE: &str = "capture.safetensors";
pub const DIRECTIONS_FILE: &str = "directions.safetensors";
pub const LAYER_PROBE_FILE: &str = "probe.json";
pub const PICK_FILE: &str = "pick.json";
pub const PICK_VECTOR_FILE: &str = "best.safetensors";
pub const COSINE_FILE: &str = "cosine.json";
pub const INJECT_FILE: &str = "injection.json";

/// Checks the sections: ids unique across sections, references resolve, settings in range.
pub fn validate(e: &Experiment, origin: &str) -> Result<()> {
    let bad = |field: String, message: String| -> Result<()> {
        Err(RunError::Field {
            origin: origin.to_string(),
            field,
            message,
        })
    };
    let mut ids = std::collections::BTreeSet::new();
    let all_ids = e
        .captures
        .iter()
        .map(|s| ("capture", &s.id))
        .chain(e.directions.iter().map(|s| ("directions", &s.id)))
        .chain(e.layer_probes.iter().map(|s| ("layer_probe", &s.id)))
        .chain(e.picks.iter().map(|s| ("pick", &s.id)))
        .chain(e.cosines.iter().map(|s| ("cosine", &s.id)))
        .chain(e.injections.iter().map(|s| ("inject", &s.id)));
    for (section, id) in all_ids {
        let ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return bad(
                format!("{section}.id"),
                format!("{id:?}: expected letters, digits, `-` or `_`"),
            );
        }
        if !ids.insert(id.as_str()) {
            return bad(
                format!("{section}.id"),
                format!("{id:?} names two sections"),
            );
        }
    }
    // A model a capture or injection can run: the base model or a LoRA finetune.
    let model_condition = |field: String, id: &str| -> Result<()> {
        let Some(c) = e.conditions.iter().find(|c| c.id == id) else {
            return bad(field, format!("{id:?} is not a condition id"));
        };
        if c.steer.is_some() || e.train.overlay(&c.train).is_steer() {
            return bad(
                field,
                format!("{id:?} is steered; captures and injections run a base model or a LoRA finetune"),
            );
        }
        if e.remote.is_some() {
            return bad(
                field,
                "activations are read inside a local model's forward pass; a served model has none"
                    .into(),
            );
        }
        Ok(())
    };
    for (i, s) in e.captures.iter().enumerate() {
        let f = |n: &str| format!("capture[{i}].{n}");
        model_condition(f("condition"), &s.condition)?;
        match (&s.prompts.battery, &s.prompts.data) {
            (Some(b), None) => {
                if selfaware_eval::builtin::battery_source(b).is_none() {
                    return bad(
                        f("prompts.battery"),
                        format!("{b:?}: expected a built-in battery name"),
                    );
                }
            }
            (None, Some(d)) => {
                if d.family.is_none() || d.file.is_some() {
                    return bad(
                        f("prompts.data"),
                        "expected a builder dataset (`family` and its options)".into(),
                    );
                }
            }
            _ => {
                return bad(
                    f("prompts"),
                    "expected exactly one of `battery` or `data`".into(),
                )
            }
        }
        if s.points.trim().is_empty() {
            return bad(
                f("points"),
                "expected hook points, e.g. blocks.*.hook_resid_post".into(),
            );
        }
        for p in s.points.split(',').map(str::trim) {
            let wild = p
                .strip_prefix("blocks.*.")
                .is_some_and(|h| crate::experiment::HOOKS.contains(&h));
            if !(wild || point_ok(p)) {
                return bad(f("points"), point_expected(p));
            }
        }
        if !["last", "all", "answer"].contains(&s.positions.as_str()) {
            return bad(
                f("positions"),
                format!("{:?}: expected last, all or answer", s.positions),
            );
        }
    }
    let is_capture = |id: &str| e.captures.iter().any(|c| c.id == id);
    for (i, s) in e.directions.iter().enumerate() {
        for (n, r) in [("a", &s.a), ("b", &s.b)] {
            if !is_capture(r) {
                return bad(
                    format!("directions[{i}].{n}"),
                    format!("{r:?} is not a [[capture]] id"),
                );
            }
        }
    }
    for (i, s) in e.layer_probes.iter().enumerate() {
        for (n, r) in [("a", &s.a), ("b", &s.b)] {
            if !is_capture(r) {
                return bad(
                    format!("layer_probe[{i}].{n}"),
                    format!("{r:?} is not a [[capture]] id"),
                );
            }
        }
        if s.folds < 2 {
            return bad(
                format!("layer_probe[{i}].folds"),
                "expected at least 2".into(),
            );
        }
        if !(s.c > 0.0 && s.c.is_finite()) {
            return bad(
                format!("layer_probe[{i}].c"),
                "expected a positive number".into(),
            );
        }
    }
    for (i, s) in e.picks.iter().enumerate() {
        if !e.directions.iter().any(|d| d.id == s.directions) {
            return bad(
                format!("pick[{i}].directions"),
                format!("{:?} is not a [[directions]] id", s.directions),
            );
        }
        if !e.layer_probes.iter().any(|d| d.id == s.probe) {
            return bad(
                format!("pick[{i}].probe"),
                format!("{:?} is not a [[layer_probe]] id", s.probe),
            );
        }
    }
    for (i, s) in e.cosines.iter().enumerate() {
        for (n, r) in [("a", &s.a), ("b", &s.b)] {
            let vector = e.directions.iter().any(|d| &d.id == r)
                || e.picks.iter().any(|d| &d.id == r)
                || e.conditions
                    .iter()
                    .any(|c| &c.id == r && e.train.overlay(&c.train).is_steer());
            if !vector {
                return bad(
                    format!("cosine[{i}].{n}"),
                    format!(
                        "{r:?}: expected the id of a [[directions]], a [[pick]] or a condition \
                         trained with the steer method"
                    ),
                );
            }
        }
    }
    for (i, s) in e.injections.iter().enumerate() {
        let f = |n: &str| format!("inject[{i}].{n}");
        model_condition(f("condition"), &s.condition)?;
        if !point_ok(&s.point) {
            return bad(f("point"), point_expected(&s.point));
        }
        if s.alphas.is_empty() || s.alphas.iter().any(|a| !a.is_finite()) {
            return bad(f("alphas"), "expected finite injection strengths".into());
        }
        if s.controls == 0 {
            return bad(f("controls"), "expected at least 1".into());
        }
    }
    Ok(())
}

/// Capture throughput of the embedded model alone on 2 cores (tokens/s), for estimates: in
/// the `inside` run of 2026-12-07 22:29 UTC a capture of 24 dialogues (5,760 tokens, every
/// layer) took 29–32 s on one core beside another stage, about 21 s alone by
/// [`crate::plan::TWO_JOB_GAIN`].
const CAPTURE_TOKENS_PER_S: f64 = 340.0;

/// What the planner knows of the run around the sections.
pub struct SectionInputs<'a> {
    pub model_reference: &'a str,
    pub model_sha256: &'a str,
    pub variants: &'a [Variant],
}

/// Adds the sections' stages (through `add`, which deduplicates by key) and returns them by
/// section id.
pub fn plan_sections(
    e: &Experiment,
    inputs: &SectionInputs,
    stages: &mut Vec<Stage>,
    add: &mut dyn FnMut(&mut Vec<Stage>, Stage) -> usize,
) -> Result<InsideStages> {
    let mut out = InsideStages::default();
    // The model of a condition: (adapter key, adapter folder, train stage).
    let model_of =
        |stages: &[Stage], id: &str| -> Result<(Option<String>, Option<PathBuf>, Option<usize>)> {
            let v = inputs
                .variants
                .iter()
                .find(|v| v.condition == id)
                .ok_or_else(|| RunError::Plan {
                    message: format!("internal: no model of condition {id}"),
                })?;
            Ok(match v.train {
                Some(t) => (
                    Some(stages[t].key.clone()),
                    Some(stages[t].dir.join("adapter")),
                    Some(t),
                ),
                None => (None, None, None),
            })
        };
    let model_args = |args: &mut Vec<String>, adapter: &Option<PathBuf>| {
        args.extend(["--model".into(), inputs.model_reference.to_string()]);
        if let Some(a) = adapter {
            args.extend(["--adapter".into(), rel(a)]);
        }
    };
    for c in &e.captures {
        let (adapter_key, adapter_dir, train) = model_of(stages, &c.condition)?;
        let mut deps: Vec<usize> = train.into_iter().collect();
        let (prompts_key, prompts_args, n_tokens) = match (&c.prompts.battery, &c.prompts.data) {
            (Some(b), _) => {
                let source = selfaware_eval::builtin::battery_source(b).unwrap_or_default();
                (
                    json!({"battery": b, "source": sha256_hex(source.as_bytes()), "seed": c.prompts.seed}),
                    vec![
                        "--battery".to_string(),
                        b.clone(),
                        "--seed".into(),
                        c.prompts.seed.to_string(),
                    ],
                    // About 80 prompts of some 150 tokens.
                    12_000.0,
                )
            }
            (None, Some(d)) => {
                let (data, file) = data_stage(d, format!("data for capture {}", c.id), stages, add);
                deps.push(data);
                let items = d.size.unwrap_or(300) as f64 * d.rows_per_item() as f64;
                (
                    json!({"data": stages[data].key}),
                    vec!["--prompts".to_string(), rel(&file)],
                    items * 240.0,
                )
            }
            (None, None) => {
                return Err(RunError::Plan {
                    message: format!("capture {}: no prompts", c.id),
                })
            }
        };
        let key = key_of(&json!({
            "v": CAPTURE_VERSION, "tool": TOOL_VERSION, "model": inputs.model_sha256,
            "adapter": adapter_key, "prompts": prompts_key, "points": c.points,
            "positions": c.positions,
        }));
        let dir = stage_dir(StageKind::Capture, &key);
        let file = dir.join(CAPTURE_FILE);
        let mut args = vec!["activations".to_string(), "capture".into()];
        model_args(&mut args, &adapter_dir);
        args.extend(prompts_args);
        args.extend([
            "--points".into(),
            c.points.clone(),
            "--positions".into(),
            c.positions.clone(),
            "--out".into(),
            rel(&file),
            "--force".into(),
        ]);
        let s = Stage {
            name: format!("capture {} ({})", c.id, c.condition),
            kind: StageKind::Capture,
            key,
            dir,
            deps,
            args,
            output: Some(file),
            estimate_s: 4.0 + n_tokens / CAPTURE_TOKENS_PER_S,
        };
        out.captures.insert(c.id.clone(), add(stages, s));
    }
    let capture = |out: &InsideStages, id: &str| out.captures[id];
    for d in &e.directions {
        let (a, b) = (capture(&out, &d.a), capture(&out, &d.b));
        let key = key_of(&json!({
            "v": DIRECTIONS_VERSION, "tool": TOOL_VERSION,
            "a": stages[a].key, "b": stages[b].key,
        }));
        let dir = stage_dir(StageKind::Directions, &key);
        let file = dir.join(DIRECTIONS_FILE);
        let args = vec![
            "activations".to_string(),
            "diff".into(),
            rel(&stages[a].output_path()),
            rel(&stages[b].output_path()),
            "--out".into(),
            rel(&file),
            "--force".into(),
        ];
        let s = Stage {
            name: format!("directions {} ({} − {})", d.id, d.a, d.b),
            kind: StageKind::Directions,
            key,
            dir,
            deps: vec![a, b],
            args,
            output: Some(file),
            estimate_s: 2.0,
        };
        out.directions.insert(d.id.clone(), add(stages, s));
    }
    for p in &e.layer_probes {
        let (a, b) = (capture(&out, &p.a), capture(&out, &p.b));
        let key = key_of(&json!({
            "v": LAYER_PROBE_VERSION, "tool": TOOL_VERSION,
            "a": stages[a].key, "b": stages[b].key,
            "folds": p.folds, "c": p.c, "seed": p.seed,
        }));
        let dir = stage_dir(StageKind::LayerProbe, &key);
        let file = dir.join(LAYER_PROBE_FILE);
        let args = vec![
            "activations".to_string(),
            "probe".into(),
            rel(&stages[a].output_path()),
            rel(&stages[b].output_path()),
            "--folds".into(),
            p.folds.to_string(),
            "--c".into(),
            p.c.to_string(),
            "--seed".into(),
            p.seed.to_string(),
            "--out".into(),
            rel(&file),
        ];
        let s = Stage {
            name: format!("layer probe {} ({} vs {})", p.id, p.a, p.b),
            kind: StageKind::LayerProbe,
            key,
            dir,
            deps: vec![a, b],
            args,
            output: Some(file),
            // 30 points × 5 folds on 48 rows: 21 s beside another stage (2026-12-07).
            estimate_s: 15.0,
        };
        out.layer_probes.insert(p.id.clone(), add(stages, s));
    }
    for p in &e.picks {
        let (d, pr) = (out.directions[&p.directions], out.layer_probes[&p.probe]);
        let key = key_of(&json!({
            "v": PICK_VERSION, "tool": TOOL_VERSION,
            "directions": stages[d].key, "probe": stages[pr].key,
        }));
        let dir = stage_dir(StageKind::Pick, &key);
        let args = vec![
            "activations".to_string(),
            "pick".into(),
            "--directions".into(),
            rel(&stages[d].output_path()),
            "--probe".into(),
            rel(&stages[pr].output_path()),
            "--out".into(),
            rel(&dir),
        ];
        let s = Stage {
            name: format!("pick {} ({} by {})", p.id, p.directions, p.probe),
            kind: StageKind::Pick,
            key,
            output: Some(dir.join(PICK_FILE)),
            dir,
            deps: vec![d, pr],
            args,
            estimate_s: 1.0,
        };
        out.picks.insert(p.id.clone(), add(stages, s));
    }
    for c in &e.cosines {
        let mut sides = Vec::new();
        for r in [&c.a, &c.b] {
            let (stage, file) = vector_of(e, inputs, &out, stages, r)?;
            sides.push((stage, file));
        }
        let key = key_of(&json!({
            "v": COSINE_VERSION, "tool": TOOL_VERSION,
            "a": stages[sides[0].0].key, "b": stages[sides[1].0].key,
        }));
        let dir = stage_dir(StageKind::Cosine, &key);
        let file = dir.join(COSINE_FILE);
        let args = vec![
            "activations".to_string(),
            "cosine".into(),
            rel(&sides[0].1),
            rel(&sides[1].1),
            "--out".into(),
            rel(&file),
        ];
        let s = Stage {
            name: format!("cosine {} ({} · {})", c.id, c.a, c.b),
            kind: StageKind::Cosine,
            key,
            dir,
            deps: vec![sides[0].0, sides[1].0],
            args,
            output: Some(file),
            estimate_s: 1.0,
        };
        out.cosines.insert(c.id.clone(), add(stages, s));
    }
    for j in &e.injections {
        let (adapter_key, adapter_dir, train) = model_of(stages, &j.condition)?;
        let key = key_of(&json!({
            "v": INJECT_VERSION, "tool": TOOL_VERSION, "model": inputs.model_sha256,
            "adapter": adapter_key, "point": j.point, "alphas": j.alphas,
            "controls": j.controls, "seed": j.seed,
        }));
        let dir = stage_dir(StageKind::Inject, &key);
        let mut args = vec!["activations".to_string(), "inject".into()];
        model_args(&mut args, &adapter_dir);
        let alphas: Vec<String> = j.alphas.iter().map(|a| a.to_string()).collect();
        args.extend([
            "--point".into(),
            j.point.clone(),
            format!("--alphas={}", alphas.join(",")),
            "--controls".into(),
            j.controls.to_string(),
            "--seed".into(),
            j.seed.to_string(),
            "--out".into(),
            rel(&dir),
            "--force".into(),
        ]);
        let s = Stage {
            name: format!("inject {} ({})", j.id, j.condition),
            kind: StageKind::Inject,
            key,
            output: Some(dir.join(INJECT_FILE)),
            dir,
            deps: train.into_iter().collect(),
            args,
            // Concept vectors (72 short prompts), then per α (and α = 0) 24 concepts × (the
            // detect wordings + the identify wordings over 1 + controls words): 72 trials with
            // 4 controls took 99 s beside another stage in the `inside` run of 2026-12-07,
            // about 69 s alone.
            estimate_s: 10.0
                + (j.alphas.len() + 1) as f64 * 24.0 * (0.42 + 0.1 * j.controls as f64),
        };
        out.injections.insert(j.id.clone(), add(stages, s));
    }
    Ok(out)
}

/// The stage and file of a vector a `[[cosine]]` names.
fn vector_of(
    e: &Experiment,
    inputs: &SectionInputs,
    out: &InsideStages,
    stages: &[Stage],
    id: &str,
) -> Result<(usize, PathBuf)> {
    if let Some(&d) = out.directions.get(id) {
        return Ok((d, stages[d].output_path()));
    }
    if let Some(&p) = out.picks.get(id) {
        return Ok((p, stages[p].dir.join(PICK_VECTOR_FILE)));
    }
    let t = e
        .conditions
        .iter()
        .find(|c| c.id == id)
        .and_then(|_| inputs.variants.iter().find(|v| v.condition == id))
        .and_then(|v| v.train)
        .ok_or_else(|| RunError::Plan {
            message: format!("cosine: no vector named {id:?}"),
        })?;
    Ok((t, stages[t].output_path()))
}

/// The data stage of a builder dataset (named `name`), and the file it writes.
pub(crate) fn data_stage(
    d: &DataSpec,
    name: String,
    stages: &mut Vec<Stage>,
    add: &mut dyn FnMut(&mut Vec<Stage>, Stage) -> usize,
) -> (usize, PathBuf) {
    let mut args = d.build_args();
    let key = key_of(&json!({
        "v": crate::plan::DATA_VERSION, "tool": TOOL_VERSION, "args": args,
    }));
    let dir = stage_dir(StageKind::Data, &key);
    let main = dir.join("data.jsonl");
    args.extend(["--out".into(), rel(&main), "--force".into()]);
    let file = if d.decorrelated() {
        dir.join("data.decorrelated.jsonl")
    } else {
        main
    };
    let s = Stage {
        name,
        kind: StageKind::Data,
        key,
        dir,
        deps: vec![],
        args,
        output: Some(file.clone()),
        estimate_s: 2.0,
    };
    (add(stages, s), file)
}

/// `pick.json` as the collector reads it (written by `activations pick`).
#[derive(Debug, Deserialize)]
struct PickFile {
    criterion: String,
    chosen: String,
    reason: String,
    rows: Vec<selfaware_report::inside::LayerRow>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| RunError::BadFile {
        path: path.to_path_buf(),
        message: format!("unexpected contents: {e}"),
    })
}

/// The point a pick chose, once its stage has run (for the steered conditions' labels).
pub fn chosen_point(run_dir: &Path, plan: &crate::Plan, pick: &str) -> Option<String> {
    let &s = plan.inside.picks.get(pick)?;
    let p: PickFile = read_json(&run_dir.join(plan.stages[s].output_path())).ok()?;
    Some(p.chosen)
}

/// The "Inside the model" results of a run, from its stages' files; None when the experiment
/// has no such section.
pub fn collect(
    run_dir: &Path,
    plan: &crate::Plan,
) -> Result<Option<selfaware_report::inside::Inside>> {
    use selfaware_report::inside::{CosineRow, Injection, InjectionMetric, Inside, LayerPick};
    let e = &plan.experiment;
    if plan.inside.is_empty() {
        return Ok(None);
    }
    let file = |s: usize| run_dir.join(plan.stages[s].output_path());
    let mut ins = Inside::default();
    for p in &e.picks {
        let f: PickFile = read_json(&file(plan.inside.picks[&p.id]))?;
        let probe = e.layer_probes.iter().find(|l| l.id == p.probe);
        let dirs = e.directions.iter().find(|d| d.id == p.directions);
        ins.picks.push(LayerPick {
            id: p.id.clone(),
            probe_label: probe
                .map(|l| {
                    l.label
                        .clone()
                        .unwrap_or_else(|| format!("capture {} vs capture {}", l.a, l.b))
                })
                .unwrap_or_default(),
            directions_label: dirs
                .map(|d| {
                    d.label.clone().unwrap_or_else(|| {
                        format!("mean of capture {} − mean of capture {}", d.a, d.b)
                    })
                })
                .unwrap_or_default(),
            criterion: f.criterion,
            chosen: f.chosen,
            reason: f.reason,
            rows: f.rows,
        });
    }
    #[derive(Deserialize)]
    struct CosineFile {
        rows: Vec<String>,
        columns: Vec<String>,
        cosine: Vec<Vec<Option<f64>>>,
    }
    for c in &e.cosines {
        let f: CosineFile = read_json(&file(plan.inside.cosines[&c.id]))?;
        let mut points = Vec::new();
        for (i, r) in f.rows.iter().enumerate() {
            if let Some(j) = f.columns.iter().position(|x| x == r) {
                if let Some(Some(v)) = f.cosine.get(i).and_then(|row| row.get(j)) {
                    points.push((r.clone(), *v));
                }
            }
        }
        ins.cosines.push(CosineRow {
            id: c.id.clone(),
            label: c.label.clone(),
            points,
        });
    }
    #[derive(Deserialize)]
    struct InjectionFile {
        report: InjectionReport,
    }
    #[derive(Deserialize)]
    struct InjectionReport {
        point: String,
        chance: f64,
        metrics: Vec<Metric>,
    }
    #[derive(Deserialize)]
    struct Metric {
        alpha: f64,
        metric: String,
        measurement: String,
        value: f64,
        low: Option<f64>,
        high: Option<f64>,
        n: usize,
        note: Option<String>,
    }
    for j in &e.injections {
        let f: InjectionFile = read_json(&file(plan.inside.injections[&j.id]))?;
        ins.injections.push(Injection {
            id: j.id.clone(),
            condition: j.condition.clone(),
            point: f.report.point,
            chance: f.report.chance,
            metrics: f
                .report
                .metrics
                .into_iter()
                .map(|m| InjectionMetric {
                    alpha: m.alpha,
                    metric: m.metric,
                    measurement: m.measurement,
                    value: m.value,
                    low: m.low,
                    high: m.high,
                    n: m.n,
                    note: m.note,
                })
                .collect(),
        });
    }
    ins.compare = compared(e);
    ins.notes = notes(e, &ins);
    Ok(Some(ins))
}

/// The conditions shown side by side: for each condition trained with the steer method, the
/// LoRA finetunes of the same data, then the vector; then the unsteered baselines.
pub fn compared(e: &Experiment) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in e
        .conditions
        .iter()
        .filter(|c| e.train.overlay(&c.train).is_steer())
    {
        for twin in e.conditions.iter().filter(|t| {
            t.data == c.data && t.steer.is_none() && !e.train.overlay(&t.train).is_steer()
        }) {
            if !out.contains(&twin.id) {
                out.push(twin.id.clone());
            }
        }
        out.push(c.id.clone());
    }
    if !out.is_empty() {
        for b in e
            .conditions
            .iter()
            .filter(|c| c.is_baseline() && c.steer.is_none())
        {
            out.push(b.id.clone());
        }
    }
    out
}

/// The report columns of the compared conditions: a condition asked under several contexts
/// is one column per context (`base@bark`); the column of the compared vectors' target word
/// is kept, or every one when they have none.
pub fn columns_of(
    e: &Experiment,
    ids: &[String],
    columns: &[selfaware_report::Condition],
) -> Vec<String> {
    let words: Vec<&str> = e
        .conditions
        .iter()
        .filter(|c| ids.contains(&c.id) && e.train.overlay(&c.train).is_steer())
        .filter_map(|c| c.target_word.as_deref())
        .collect();
    let mut out = Vec::new();
    for id in ids {
        if columns.iter().any(|c| &c.id == id) {
            out.push(id.clone());
            continue;
        }
        let split: Vec<&str> = columns
            .iter()
            .filter_map(|c| {
                c.id.strip_prefix(&format!("{id}@"))
                    .map(|w| (c.id.as_str(), w))
            })
            .filter(|(_, w)| words.is_empty() || words.contains(w))
            .map(|(c, _)| c)
            .collect();
        out.extend(split.into_iter().map(str::to_string));
    }
    out
}

/// What the section shows and does not, from what was measured.
fn notes(e: &Experiment, ins: &selfaware_report::inside::Inside) -> Vec<String> {
    let mut n = Vec::new();
    for p in &ins.picks {
        let best = p.rows.iter().map(|r| r.accuracy).fold(f64::NAN, f64::max);
        let tied = p.rows.iter().filter(|r| r.accuracy == best).count();
        n.push(format!(
            "The steering layer was chosen by the probe's accuracy alone ({}), before any steered \
             model was asked: {}.",
            p.probe_label, p.reason
        ));
        if tied > 1 {
            n.push(format!(
                "{tied} of {} points reach the same accuracy ({}): the probe cannot rank them, so \
                 the choice among them is the fixed tie rule, not evidence that this layer matters most.",
                p.rows.len(),
                selfaware_report::format::fixed(best, 3)
            ));
        }
        n.push(
            "A probe that tells two finetunes' activations apart shows that the finetunes differ \
             on these prompts at that point; it does not show that the difference carries the \
             codeword, nor that the model reads it."
                .into(),
        );
    }
    if e.conditions
        .iter()
        .any(|c| c.steer.as_ref().is_some_and(|s| s.from.is_some()))
    {
        n.push(
            "Steering the base model along the chosen direction tests whether that direction moves \
             behaviour and self-report; each α is one model, so its intervals are over paraphrases \
             or probe items, not over finetunes, and an effect at large |α| may be damage rather \
             than steering."
                .into(),
        );
    }
    if !ins.compare.is_empty() {
        n.push(
            "The trained steering vector and the LoRA are compared on the same probe and questions; \
             a cosine near 0 between 576-wide vectors is what unrelated directions give, so only a \
             clearly non-zero cosine says the vector found the LoRA's direction."
                .into(),
        );
    }
    if !ins.injections.is_empty() {
        n.push(
            "Concept injection asks whether the model reports an injected concept: a detection gain \
             whose interval excludes 0 means P(yes) rose with injection; it does not show \
             introspection when P(yes) also rises for any perturbation (compare the α = 0 \
             false-positive rate) or when identification stays at the baseline."
                .into(),
        );
    }
    n
}
