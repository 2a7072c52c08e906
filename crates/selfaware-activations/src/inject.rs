//! Concept injection, after Lindsey (2025), "Emergent introspective awareness in large language
//! models": a concept's direction is added to the residual stream while the model is asked
//! whether it notices an injected thought, and what the thought is about. Every number is exact
//! (from the engine's log-probabilities); nothing is sampled.
//!
//! # Method
//!
//! - **Concept vectors.** For each word `w` of the battery's `concepts` and `baseline`, the
//!   activation at `point` at the last prompt token of `concept_prompt` with `{word}` = `w`
//!   (the assistant header, as scoring runs the prompt). A concept's vector is its activation
//!   minus the mean of the baseline words' activations.
//! - **Trials.** For each concept `c` and each `alpha` of the grid, the model steered with
//!   `alpha · v_c` at `point` (at every position: prompt, header and answer; Lindsey injects
//!   from the trial's text onwards) answers every `detect` wording — scored as P(Yes) and
//!   P(No), the first answer token's probabilities of `Yes` and `No`, with P(yes) = P(Yes) /
//!   (P(Yes) + P(No)) — and every `identify` wording, where the concept's word and `controls`
//!   other concepts (a seeded draw per concept, the same at every alpha) are each scored as the
//!   complete answer (the word in lower case and capitalised, summed): P(own word) renormalised
//!   over those candidates, and its rank.
//! - **Controls.** `alpha = 0` is the trial without injection: its P(yes) is the false-positive
//!   rate (the same for every concept, so its interval is over the detect wordings), and its
//!   P(own word) is the identification baseline for the same candidate sets (chance is
//!   `1 / (controls + 1)`; the measured baseline is what gains are read against).
//!
//! Intervals are percentile bootstraps over concepts (each concept's mean over wordings), with
//! the gains paired by concept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use selfaware_model::steer::{SteerVector, Steering};
use selfaware_model::{Engine, HookPoint};
use selfaware_stats::{bootstrap_mean_ci, BootstrapConfig};
use selfaware_types::{Conversation, Provenance};
use serde::{Deserialize, Serialize};

use crate::error::{ActivationsError, Result};
use crate::readout::Directions;
use crate::{capture_conversations, CaptureModel, Positions};

/// The built-in battery's text (`data/concept_injection.toml`).
pub const BUILTIN: &str = include_str!("../data/concept_injection.toml");

/// The words and wordings of a concept-injection battery (data: `data/concept_injection.toml`
/// is the built-in one; a user's file has the same fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionBattery {
    /// Where the wordings come from.
    pub source: String,
    /// The prompt that stands for a word, with `{word}`.
    pub concept_prompt: String,
    /// Questions whether the model notices an injected thought, answered Yes or No.
    pub detect: Vec<String>,
    /// Questions what the injected thought is about, answered with one word.
    pub identify: Vec<String>,
    /// The concepts injected.
    pub concepts: Vec<String>,
    /// The words whose mean activation is subtracted.
    pub baseline: Vec<String>,
}

impl InjectionBattery {
    /// The built-in battery.
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN, "the built-in concept-injection battery")
    }

    /// The battery file `path` (TOML, the built-in one's fields), else the built-in battery.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(Self::builtin, Self::read)
    }

    /// A battery file (TOML, the built-in one's fields).
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|e| ActivationsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a battery; errors name `origin` and the field.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |m: String| ActivationsError::Input(format!("{origin}: {m}"));
        let b: InjectionBattery = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !b.concept_prompt.contains("{word}") {
            return Err(bad(
                "concept_prompt: expected a prompt with {word} (e.g. \"Tell me about {word}.\")"
                    .into(),
            ));
        }
        for (field, list) in [
            ("detect", &b.detect),
            ("identify", &b.identify),
            ("concepts", &b.concepts),
            ("baseline", &b.baseline),
        ] {
            if list.is_empty() {
                return Err(bad(format!("{field}: expected at least one entry")));
            }
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err(bad(format!("{field}[{i}]: empty")));
            }
            for (i, s) in list.iter().enumerate() {
                if list[..i].contains(s) {
                    return Err(bad(format!("{field}[{i}]: {s:?} is listed twice")));
                }
            }
        }
        if b.concepts.len() < 2 {
            return Err(bad(
                "concepts: expected at least two (the others are the control words)".into(),
            ));
        }
        if let Some(w) = b.concepts.iter().find(|w| b.baseline.contains(w)) {
            return Err(bad(format!(
                "baseline: {w:?} is also a concept; a concept's vector is measured against words that are not concepts"
            )));
        }
        Ok(b)
    }

    fn concept_conversation(&self, word: &str) -> Conversation {
        Conversation::user(None, &self.concept_prompt.replace("{word}", word))
    }
}

/// What to inject where.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectSpec {
    pub point: HookPoint,
    /// Injection strengths; 0 (the trials without injection) is added when missing.
    pub alphas: Vec<f32>,
    /// Control words scored beside each concept's own word in `identify`.
    pub controls: usize,
    /// Seed of the control draws and of the bootstrap.
    pub seed: u64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Interval level.
    pub level: f64,
}

impl InjectSpec {
    /// A spec with 2,000 bootstrap resamples and 95% intervals.
    pub fn new(point: HookPoint, alphas: Vec<f32>, controls: usize, seed: u64) -> Self {
        InjectSpec {
            point,
            alphas,
            controls,
            seed,
            resamples: 2000,
            level: 0.95,
        }
    }
}

/// Concept vectors at one point.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConceptVectors {
    pub point: Option<HookPoint>,
    pub words: Vec<String>,
    /// `[d]` per word: its activation minus the baseline mean.
    pub vectors: Vec<Vec<f32>>,
    /// The mean L2 norm of the baseline words' activations at the point (to read a vector's
    /// norm, and so alpha, against).
    pub baseline_norm: f64,
}

/// The concepts' vectors at `point` (see the module's account).
pub fn concept_vectors(
    engine: &Engine,
    battery: &InjectionBattery,
    point: HookPoint,
) -> Result<ConceptVectors> {
    let convs: Vec<Conversation> = battery
        .concepts
        .iter()
        .chain(&battery.baseline)
        .map(|w| battery.concept_conversation(w))
        .collect();
    let a = capture_conversations(engine, &convs, &[point], Positions::Last)?;
    let rows = &a.points[0].1;
    let d = a.d;
    let k = battery.concepts.len();
    let base: Vec<&[f32]> = (k..convs.len())
        .map(|i| &rows[i * d..(i + 1) * d])
        .collect();
    let n = base.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| base.iter().map(|r| f64::from(r[j])).sum::<f64>() / n)
        .collect();
    let baseline_norm = base.iter().map(|r| l2(r)).sum::<f64>() / n;
    let vectors = (0..k)
        .map(|i| {
            rows[i * d..(i + 1) * d]
                .iter()
                .zip(&mean)
                .map(|(x, m)| (f64::from(*x) - m) as f32)
                .collect()
        })
        .collect();
    Ok(ConceptVectors {
        point: Some(point),
        words: battery.concepts.clone(),
        vectors,
        baseline_norm,
    })
}

fn l2(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// The control words of each concept: `controls` other concepts, a seeded draw per concept.
pub fn control_words(concepts: &[String], controls: usize, seed: u64) -> Result<Vec<Vec<String>>> {
    if controls + 1 > concepts.len() {
        return Err(ActivationsError::Input(format!(
            "controls: {controls} control words need at least {} concepts; the battery has {}",
            controls + 1,
            concepts.len()
        )));
    }
    Ok(concepts
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (i as u64 + 1));
            let mut others: Vec<String> = concepts
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, w)| w.clone())
                .collect();
            others.shuffle(&mut rng);
            others.truncate(controls);
            others
        })
        .collect())
}

/// The forms of a word scored as the complete answer: as written and capitalised (one form
/// when they are the same).
pub fn forms(word: &str) -> Vec<String> {
    let cap = selfaware_types::capitalize(word);
    if cap == word {
        vec![word.to_string()]
    } else {
        vec![word.to_string(), cap]
    }
}

/// One identification answer, from the words' probabilities as complete answers (forms
/// summed; the concept's own word first).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Identification {
    /// P(own word) renormalised over the candidate words.
    pub p_own: f64,
    /// 1 + the number of candidates more probable than the own word.
    pub rank: usize,
    /// The candidates' total probability (how much of the answer they hold).
    pub mass: f64,
}

impl Identification {
    /// From the candidates' probabilities, the own word's first.
    pub fn of(probs: &[f64]) -> Identification {
        let mass: f64 = probs.iter().sum();
        let own = probs.first().copied().unwrap_or(0.0);
        Identification {
            p_own: if mass > 0.0 { own / mass } else { 0.0 },
            rank: 1 + probs.iter().skip(1).filter(|&&p| p > own).count(),
            mass,
        }
    }
}

/// One detection answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// P(Yes) / (P(Yes) + P(No)).
    pub p_yes: f64,
    /// P(Yes) + P(No): how much of the first answer token the two hold.
    pub mass: f64,
}

impl Detection {
    pub fn of(p_yes: f64, p_no: f64) -> Detection {
        let mass = p_yes + p_no;
        Detection {
            p_yes: if mass > 0.0 { p_yes / mass } else { 0.0 },
            mass,
        }
    }
}

/// Everything one concept answered at one alpha.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub concept: String,
    pub alpha: f32,
    /// Per detect wording.
    pub detect: Vec<Detection>,
    /// Per identify wording.
    pub identify: Vec<Identification>,
}

impl Trial {
    fn p_yes(&self) -> f64 {
        self.detect.iter().map(|d| d.p_yes).sum::<f64>() / self.detect.len() as f64
    }
    fn p_own(&self) -> f64 {
        self.identify.iter().map(|i| i.p_own).sum::<f64>() / self.identify.len() as f64
    }
    fn top1(&self) -> f64 {
        self.identify.iter().filter(|i| i.rank == 1).count() as f64 / self.identify.len() as f64
    }
}

/// One metric at one alpha.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub alpha: f32,
    /// `p_yes`, `detection_gain`, `p_own`, `identification_gain`, `top1`.
    pub metric: &'static str,
    /// What was measured, in words.
    pub measurement: String,
    /// The mean of the values.
    pub value: f64,
    /// The percentile-bootstrap interval of the mean (`level`), when there is one.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub level: f64,
    /// Why there is no interval, when there is none.
    pub note: Option<String>,
    /// Values the interval is over.
    pub n: usize,
}

/// A concept-injection run's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InjectionReport {
    pub point: String,
    pub alphas: Vec<f32>,
    pub controls: usize,
    pub seed: u64,
    pub battery: InjectionBattery,
    /// Chance for `p_own`: 1 / (controls + 1).
    pub chance: f64,
    pub baseline_norm: f64,
    /// Per concept: its vector's L2 norm.
    pub vector_norms: Vec<(String, f64)>,
    pub control_words: Vec<Vec<String>>,
    pub metrics: Vec<Metric>,
    pub trials: Vec<Trial>,
    /// The concept vectors (written as files, not into the JSON).
    #[serde(skip)]
    pub vectors: ConceptVectors,
}

/// Runs the battery (see the module's account). `progress(done, total)` counts (concept,
/// alpha) trials.
pub fn run(
    engine: &Engine,
    battery: &InjectionBattery,
    spec: &InjectSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<InjectionReport> {
    spec.point.check(engine.model.cfg.num_layers)?;
    if let Some(a) = spec.alphas.iter().find(|a| !a.is_finite()) {
        return Err(ActivationsError::Input(format!(
            "alphas: {a} is not a finite number"
        )));
    }
    let mut alphas = spec.alphas.clone();
    if !alphas.contains(&0.0) {
        alphas.push(0.0);
    }
    alphas.sort_by(f32::total_cmp);
    alphas.dedup();
    let controls = control_words(&battery.concepts, spec.controls, spec.seed)?;
    let cv = concept_vectors(engine, battery, spec.point)?;
    let detect: Vec<Conversation> = battery
        .detect
        .iter()
        .map(|q| Conversation::user(None, q))
        .collect();
    let identify: Vec<Conversation> = battery
        .identify
        .iter()
        .map(|q| Conversation::user(None, q))
        .collect();

    let mut steered = engine.with_steering(None)?;
    // Without injection the answers do not depend on the concept: the detect prompts once, and
    // every concept's word once per identify wording (a word's probability as the whole answer
    // does not depend on which other words are scored beside it).
    let all: Vec<&String> = battery.concepts.iter().collect();
    let detect0 = detections(&steered, &detect)?;
    let probs0: Vec<Vec<f64>> = identify
        .iter()
        .map(|conv| word_probs(&steered, conv, &all))
        .collect::<Result<_>>()?;
    let total = alphas.len() * battery.concepts.len();
    let mut done = 0;
    let mut trials = Vec::with_capacity(total);
    for &alpha in &alphas {
        for (i, concept) in battery.concepts.iter().enumerate() {
            let words: Vec<&String> = std::iter::once(concept).chain(&controls[i]).collect();
            let (detect, identify) = if alpha == 0.0 {
                let index = |w: &String| battery.concepts.iter().position(|c| c == w);
                let identify = probs0
                    .iter()
                    .map(|p| {
                        let probs: Vec<f64> = words
                            .iter()
                            .filter_map(|w| index(w))
                            .map(|k| p[k])
                            .collect();
                        Identification::of(&probs)
                    })
                    .collect();
                (detect0.clone(), identify)
            } else {
                steered.set_steering(Steering::new(
                    &[SteerVector::new(spec.point, cv.vectors[i].clone(), alpha)],
                    &engine.model.cfg,
                )?);
                let identify = identify
                    .iter()
                    .map(|conv| Ok(Identification::of(&word_probs(&steered, conv, &words)?)))
                    .collect::<Result<Vec<_>>>()?;
                (detections(&steered, &detect)?, identify)
            };
            trials.push(Trial {
                concept: concept.clone(),
                alpha,
                detect,
                identify,
            });
            done += 1;
            progress(done, total);
        }
    }
    let metrics = metrics(&trials, &alphas, battery, spec)?;
    Ok(InjectionReport {
        point: spec.point.to_string(),
        alphas,
        controls: spec.controls,
        seed: spec.seed,
        battery: battery.clone(),
        chance: 1.0 / (spec.controls + 1) as f64,
        baseline_norm: cv.baseline_norm,
        vector_norms: cv
            .words
            .iter()
            .zip(&cv.vectors)
            .map(|(w, v)| (w.clone(), l2(v)))
            .collect(),
        control_words: controls,
        metrics,
        trials,
        vectors: cv,
    })
}

/// The detect wordings' answers: P(Yes) against P(No) on the first answer token.
fn detections(engine: &Engine, convs: &[Conversation]) -> Result<Vec<Detection>> {
    let yes_no = ["Yes".to_string(), "No".to_string()];
    Ok(engine
        .first_token_logprobs_many(convs, &yes_no, &mut |_| {})?
        .iter()
        .map(|f| Detection::of(f[0].1.exp(), f[1].1.exp()))
        .collect())
}

/// Each word's probability as the whole answer to `conv`, its [`forms`] summed.
fn word_probs(engine: &Engine, conv: &Conversation, words: &[&String]) -> Result<Vec<f64>> {
    let cands: Vec<String> = words.iter().flat_map(|w| forms(w)).collect();
    let scores = engine.score_options(conv, &cands)?;
    let mut out = Vec::with_capacity(words.len());
    let mut k = 0;
    for w in words {
        let n = forms(w).len();
        out.push(
            scores.candidates[k..k + n]
                .iter()
                .map(|c| c.logprob.exp())
                .sum(),
        );
        k += n;
    }
    Ok(out)
}

/// The metrics of every alpha (see the module's account).
fn metrics(
    trials: &[Trial],
    alphas: &[f32],
    battery: &InjectionBattery,
    spec: &InjectSpec,
) -> Result<Vec<Metric>> {
    let k = battery.concepts.len();
    let at = |a: f32| -> Vec<&Trial> { trials.iter().filter(|t| t.alpha == a).collect() };
    let control = at(0.0);
    let cfg = BootstrapConfig {
        resamples: spec.resamples,
        level: spec.level,
        seed: spec.seed,
    };
    let mut out = Vec::new();
    let mut push = |alpha: f32, metric: &'static str, measurement: String, values: &[f64]| {
        let value = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let (low, high, note) = if values.len() < 2 {
            (None, None, Some("one value: no interval".to_string()))
        } else {
            match bootstrap_mean_ci(values, &cfg) {
                Ok(i) => (Some(i.low), Some(i.high), None),
                Err(e) => (None, None, Some(e.to_string())),
            }
        };
        out.push(Metric {
            alpha,
            metric,
            measurement,
            value,
            low,
            high,
            level: spec.level,
            note,
            n: values.len(),
        });
    };
    for &a in alphas {
        let ts = at(a);
        if a == 0.0 {
            // Without injection every concept's detect prompts are the same: the spread is
            // over the wordings.
            let per_wording: Vec<f64> = ts[0].detect.iter().map(|d| d.p_yes).collect();
            push(
                a,
                "p_yes",
                format!(
                    "false-positive rate: exact P(Yes)/(P(Yes)+P(No)) without injection, mean over {} detect wordings (interval over wordings)",
                    per_wording.len()
                ),
                &per_wording,
            );
        } else {
            let v: Vec<f64> = ts.iter().map(|t| t.p_yes()).collect();
            push(a, "p_yes", format!("exact P(Yes)/(P(Yes)+P(No)) under injection, mean over {k} concepts (each over the detect wordings)"), &v);
            let gain: Vec<f64> = ts
                .iter()
                .zip(&control)
                .map(|(t, c)| t.p_yes() - c.p_yes())
                .collect();
            push(a, "detection_gain", format!("P(yes) with injection minus without, paired by concept, mean over {k} concepts"), &gain);
        }
        let own: Vec<f64> = ts.iter().map(|t| t.p_own()).collect();
        push(
            a,
            "p_own",
            format!(
                "exact P(the concept's word) as the complete answer, renormalised over it and {} control words, mean over {k} concepts (chance {:.3})",
                spec.controls,
                1.0 / (spec.controls + 1) as f64
            ),
            &own,
        );
        if a != 0.0 {
            let gain: Vec<f64> = ts
                .iter()
                .zip(&control)
                .map(|(t, c)| t.p_own() - c.p_own())
                .collect();
            push(a, "identification_gain", format!("P(own word) with injection minus without (same candidates), paired by concept, mean over {k} concepts"), &gain);
        }
        let top1: Vec<f64> = ts.iter().map(|t| t.top1()).collect();
        push(a, "top1", format!("share of identify answers whose most probable candidate is the concept's word, mean over {k} concepts"), &top1);
    }
    Ok(out)
}

impl InjectionReport {
    /// The metrics as a text table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "concept injection at {} ({} concepts, {} control words each; chance P(own) {:.3}; baseline activation norm {:.2})\n",
            self.point,
            self.battery.concepts.len(),
            self.controls,
            self.chance,
            self.baseline_norm
        );
        let level = self.metrics.first().map_or(0.95, |m| m.level);
        s.push_str(&format!(
            "{:>7}  {:<20} {:>8}  {:<22} {}\n",
            "alpha",
            "metric",
            "value",
            format!("{:.0}% interval", level * 100.0),
            "n"
        ));
        for m in &self.metrics {
            let interval = match (m.low, m.high) {
                (Some(l), Some(h)) => format!("[{l:.4}, {h:.4}]"),
                _ => m.note.clone().unwrap_or_default(),
            };
            s.push_str(&format!(
                "{:>7}  {:<20} {:>8.4}  {:<22} {}\n",
                m.alpha, m.metric, m.value, interval, m.n
            ));
        }
        s
    }
}

/// The file a run writes its results to, in its output folder.
pub const RESULTS_FILE: &str = "injection.json";

/// Refuses an output folder that holds an earlier run's results, unless `force`.
pub fn check_out_dir(dir: &Path, force: bool) -> Result<()> {
    if dir.is_file() {
        return Err(ActivationsError::Input(format!(
            "{} is a file\nhint: --out names the folder to write",
            dir.display()
        )));
    }
    let results = dir.join(RESULTS_FILE);
    if results.exists() && !force {
        return Err(ActivationsError::OutExists { path: results });
    }
    Ok(())
}

impl InjectionReport {
    /// Writes `DIR/injection.json` (the report, the model and the tool's provenance),
    /// `DIR/injection.csv` (the metrics) and `DIR/vectors/NN-WORD.safetensors` (each concept's
    /// vector as a tensor named as the point: `--steer FILE:POINT:ALPHA` reads it). Returns
    /// the files written.
    pub fn write(
        &self,
        dir: &Path,
        force: bool,
        model: &CaptureModel<'_>,
        tool: &Provenance,
    ) -> Result<Vec<PathBuf>> {
        check_out_dir(dir, force)?;
        let vectors_dir = dir.join("vectors");
        fs_err::create_dir_all(&vectors_dir).map_err(crate::error::io(&vectors_dir))?;
        let mut provenance = tool.clone();
        provenance.model_sha256 = Some(model.engine.info.sha256.clone());
        provenance.adapter_sha256 = match &model.adapter {
            Some(a) => Some(selfaware_model::file_sha256(
                &a.join(selfaware_model::lora::ADAPTER_WEIGHTS),
            )?),
            None => None,
        };
        provenance.seed = Some(self.seed);
        let mut written = Vec::new();
        for (i, (word, v)) in self
            .vectors
            .words
            .iter()
            .zip(&self.vectors.vectors)
            .enumerate()
        {
            let safe: String = word
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let path = vectors_dir.join(format!("{i:02}-{safe}.safetensors"));
            let mut metadata = BTreeMap::new();
            metadata.insert("format".into(), crate::readout::DIRECTIONS_FORMAT.into());
            metadata.insert(
                "method".into(),
                "concept vector: activation of concept_prompt minus the baseline words' mean"
                    .into(),
            );
            metadata.insert("concept".into(), word.clone());
            metadata.insert("concept_prompt".into(), self.battery.concept_prompt.clone());
            metadata.insert(
                "baseline_words".into(),
                self.battery.baseline.len().to_string(),
            );
            metadata.insert("model_sha256".into(), model.engine.info.sha256.clone());
            metadata.insert(
                "adapter_sha256".into(),
                provenance.adapter_sha256.clone().unwrap_or_default(),
            );
            Directions {
                points: vec![(self.point.clone(), v.clone())],
                metadata,
            }
            .write(&path, true)?;
            written.push(path);
        }
        let json = serde_json::json!({
            "format": "selfaware-injection/1",
            "model": model.label,
            "adapter": model.adapter.as_ref().map(|a| a.display().to_string()),
            "provenance": provenance,
            "report": self,
        });
        let csv = self.csv();
        for (name, text) in [
            (
                RESULTS_FILE,
                serde_json::to_string_pretty(&json)
                    .map_err(|e| ActivationsError::Input(e.to_string()))?
                    + "\n",
            ),
            ("injection.csv", csv),
        ] {
            let path = dir.join(name);
            selfaware_types::write_atomic(&path, text.as_bytes())
                .map_err(crate::error::io(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// The metrics as CSV: `alpha,metric,value,low,high,level,n,note,measurement`.
    pub fn csv(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let mut s = String::from("alpha,metric,value,low,high,level,n,note,measurement\n");
        for m in &self.metrics {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                m.alpha,
                m.metric,
                m.value,
                opt(m.low),
                opt(m.high),
                m.level,
                m.n,
                q(m.note.as_deref().unwrap_or("")),
                q(&m.measurement)
            ));
        }
        s
    }
}
