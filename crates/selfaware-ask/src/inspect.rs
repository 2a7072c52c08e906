//! An evaluation folder as an Inspect log (`inspect_ai`'s JSON log format, version 2), so that
//! `inspect_ai.log.read_eval_log` reads it and `inspect view` shows it.
//!
//! The log is built from the folder alone: `eval_manifest.json` (model, settings,
//! provenance), `battery.toml` (re-rendered with the run's seed and newline mode to recover
//! each prompt's text, checked against the record's prompt hash) and `records.jsonl`. One
//! Inspect sample per record, keyed by its place in the battery's sweep; its score, under the
//! question's id, is the record's score (a record without a score has none, and says why in
//! its metadata); the observation, the masses and the secondary numbers travel in the score's
//! metadata. The results hold one entry per question: the mean score over the records with
//! one, its standard error over records and the count — a plain summary over prompts, not the
//! intervals over models that `selfaware run` reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use selfaware_eval::battery::{Battery, ScorerSpec};
use selfaware_eval::records::{read_records, EvalRecord, Observation, RecordKey};
use selfaware_eval::render::{render_battery, PromptItem, RenderOptions};

use crate::error::{AskError, Result};
use crate::eval::{EvalManifest, BATTERY_FILE, MANIFEST_FILE, RECORDS_FILE};

/// The Inspect log of the evaluation in `dir`.
pub fn inspect_log(dir: &Path) -> Result<Value> {
    let bad = |path: &Path, message: String| AskError::File {
        path: path.to_path_buf(),
        message,
    };
    let mpath = dir.join(MANIFEST_FILE);
    let manifest_text = fs_err::read_to_string(&mpath)?;
    let manifest: EvalManifest = serde_json::from_str(&manifest_text)
        .map_err(|e| bad(&mpath, format!("not an evaluation manifest: {e}")))?;
    let bpath = dir.join(BATTERY_FILE);
    let battery = Battery::from_toml_str(
        &fs_err::read_to_string(&bpath)?,
        &bpath.display().to_string(),
    )?;
    let rpath = dir.join(RECORDS_FILE);
    let records = read_records(&rpath)?.records;
    let items = render_battery(
        &battery,
        RenderOptions {
            newlines: manifest.settings.newlines,
            seed: manifest.settings.seed,
        },
    )?;
    let created = rfc3339(fs_err::metadata(&rpath)?.modified()?);
    let model = format!("selfaware/{}", manifest.model);

    let mut samples = Vec::with_capacity(records.len());
    let mut sample_ids = Vec::with_capacity(records.len());
    // question id → (scorer, scores of its records)
    let mut per_question: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
    for (line, r) in records.iter().enumerate() {
        let item = items
            .iter()
            .find(|it| same_key(&RecordKey::for_item(&r.model, r.adapter.as_deref(), it), r))
            .filter(|it| it.prompt_sha256 == r.prompt_sha256)
            .ok_or_else(|| {
                bad(
                    &rpath,
                    format!(
                        "line {}: question `{}` paraphrase {} is not a prompt of {} as rendered now (or its text changed)",
                        line + 1,
                        r.question,
                        r.paraphrase,
                        bpath.display()
                    ),
                )
            })?;
        let question = battery.question(&r.question).ok_or_else(|| {
            bad(
                &rpath,
                format!("line {}: no question `{}`", line + 1, r.question),
            )
        })?;
        let id = sample_id(r);
        sample_ids.push(json!(id));
        let entry = per_question
            .entry(r.question.clone())
            .or_insert((r.scorer.clone(), Vec::new()));
        if let Some(s) = r.score {
            entry.1.push(s);
        }
        samples.push(sample(
            r,
            item,
            &question.scorer,
            id,
            &model,
            manifest.settings.target_word.as_deref(),
        ));
    }
    let scores: Vec<Value> = per_question
        .iter()
        .map(|(q, (scorer, xs))| {
            let mut metrics = Map::new();
            metrics.insert("count".into(), metric("count", json!(xs.len())));
            if let Some(m) = mean(xs) {
                metrics.insert("mean".into(), metric("mean", json!(m)));
            }
            if let Some(se) = stderr(xs) {
                metrics.insert("stderr".into(), metric("stderr", json!(se)));
            }
            json!({"name": q, "scorer": scorer, "params": {}, "metrics": metrics})
        })
        .collect();
    let settings = &manifest.settings;
    let mut eval = json!({
        // One evaluation folder, one id: the manifest names the model, adapters, battery and
        // settings (two models asked the same battery get two ids, so two file names).
        "run_id": &selfaware_types::sha256_hex(manifest_text.as_bytes())[..22],
        "created": created,
        "task": format!("selfaware/{}", manifest.battery),
        "task_id": manifest.battery_sha256.get(..22).unwrap_or(&manifest.battery_sha256),
        "task_version": 0,
        "dataset": {
            "name": manifest.battery,
            "location": manifest.battery_source,
            "samples": samples.len(),
            "sample_ids": sample_ids,
        },
        "model": model,
        "model_args": {
            "model_path": manifest.model_path,
            "adapters": manifest.adapters,
        },
        "model_generate_config": {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
            "max_tokens": settings.max_tokens,
            "num_choices": settings.samples,
        },
        "config": {},
        "packages": {"selfaware": manifest.provenance.tool_version},
        "metadata": {
            "selfaware_provenance": manifest.provenance,
            "selfaware_settings": settings,
            "selfaware_limit": manifest.limit,
        },
    });
    if let Some(rev) = &manifest.provenance.git_revision {
        eval["revision"] = json!({"type": "git", "origin": "selfaware", "commit": rev});
    }
    Ok(json!({
        "version": 2,
        "status": "success",
        "eval": eval,
        "plan": {"name": "plan", "steps": [{"solver": "selfaware_eval", "params": {}}], "config": {}},
        "results": {
            "total_samples": samples.len(),
            "completed_samples": samples.len(),
            "scores": scores,
        },
        "stats": {"started_at": created, "completed_at": created, "model_usage": {}},
        "samples": samples,
    }))
}

/// Writes [`inspect_log`] of `dir` to `out` and returns the file written. When `out` is a
/// folder, the file gets a name in Inspect's own pattern (`TIME_TASK_ID.json`), which is what
/// `inspect view` lists; a file path is written as named. An existing file is replaced only
/// when it is an Inspect log (a JSON object with `version` and `eval`), so nothing else is
/// overwritten.
pub fn write_inspect_log(dir: &Path, out: &Path) -> Result<PathBuf> {
    let log = inspect_log(dir)?;
    let out = if out.is_dir() {
        let created = log["eval"]["created"].as_str().unwrap_or_default();
        let stamp = created.trim_end_matches('Z').replace(':', "-");
        let task = log["eval"]["dataset"]["name"].as_str().unwrap_or("battery");
        let id = log["eval"]["run_id"].as_str().unwrap_or_default();
        out.join(format!("{stamp}+00-00_selfaware-{task}_{id}.json"))
    } else {
        out.to_path_buf()
    };
    if out.exists() {
        let ours = fs_err::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v.get("version").is_some() && v.get("eval").is_some());
        if !ours {
            return Err(AskError::File {
                path: out,
                message: "exists and is not an Inspect log; not overwritten".into(),
            });
        }
    }
    let text = serde_json::to_string_pretty(&log)
        .map_err(|e| AskError::input("inspect log", e.to_string()))?;
    let tmp = out.with_extension("json.tmp");
    fs_err::write(&tmp, text)?;
    fs_err::rename(&tmp, &out)?;
    Ok(out)
}

fn same_key(k: &RecordKey, r: &EvalRecord) -> bool {
    k.question == r.question
        && k.paraphrase == r.paraphrase
        && k.permutation == r.permutation
        && k.system_prompt == r.system_prompt
        && k.prefix == r.prefix
        && k.vars == r.vars
}

/// A record's place in the sweep, unique within an evaluation folder.
fn sample_id(r: &EvalRecord) -> String {
    let mut id = format!("{}/p{}", r.question, r.paraphrase);
    if !r.permutation.is_empty() {
        let p: Vec<String> = r.permutation.iter().map(usize::to_string).collect();
        id.push_str(&format!("/order{}", p.join("")));
    }
    if let Some(s) = &r.system_prompt {
        id.push_str(&format!("/system:{s}"));
    }
    if r.prefix > 0 {
        id.push_str(&format!("/prefix{}", r.prefix));
    }
    for (k, v) in &r.vars {
        id.push_str(&format!("/{k}{v}"));
    }
    if let Some(a) = &r.adapter {
        id = format!("{a}::{id}");
    }
    id
}

fn observation_kind(o: &Observation) -> &'static str {
    match o {
        Observation::LabelProbabilities { .. } => "exact option probabilities",
        Observation::NumberProbabilities { .. } => "exact number distribution",
        Observation::TopLogprobs { .. } => "top log-probabilities (estimator)",
        Observation::Samples { .. } => "samples",
        Observation::AnswerLogprobs { .. } => "exact answer-list probabilities",
        Observation::Judged { .. } => "samples read by a judge",
        Observation::JudgedRatings { .. } => "samples rated by judges",
        Observation::FunctionCalls { .. } => "functions run in the sandbox",
    }
}

fn samples_of(o: &Observation) -> &[String] {
    match o {
        Observation::Samples { samples }
        | Observation::AnswerLogprobs { samples, .. }
        | Observation::Judged { samples, .. }
        | Observation::JudgedRatings { samples, .. }
        | Observation::FunctionCalls { samples, .. } => samples,
        _ => &[],
    }
}

fn sample(
    r: &EvalRecord,
    item: &PromptItem,
    scorer: &ScorerSpec,
    id: String,
    model: &str,
    target_word: Option<&str>,
) -> Value {
    let mut input = Vec::new();
    if let Some(s) = &item.system {
        input.push(json!({"role": "system", "content": s}));
    }
    input.push(json!({"role": "user", "content": item.user}));
    let target = match scorer {
        ScorerSpec::MultipleChoice { correct, .. } => item
            .key
            .permutation
            .iter()
            .position(|c| c == correct)
            .and_then(|pos| item.labels.get(pos))
            .cloned()
            .unwrap_or_default(),
        ScorerSpec::TargetWord | ScorerSpec::JudgedWord { .. } => {
            target_word.unwrap_or_default().to_string()
        }
        _ => String::new(),
    };
    let answers = samples_of(&r.observation);
    let mut messages = input.clone();
    let mut out = json!({"model": model, "choices": []});
    if let Some(first) = answers.first() {
        messages.push(json!({"role": "assistant", "content": first}));
        out = json!({
            "model": model,
            "choices": answers.iter().map(|a| json!({
                "message": {"role": "assistant", "content": a, "model": model},
                "stop_reason": "stop",
            })).collect::<Vec<_>>(),
            "completion": first,
        });
    }
    let kind = observation_kind(&r.observation);
    let mut scores = Map::new();
    if let Some(s) = r.score {
        scores.insert(
            r.question.clone(),
            json!({
                "value": s,
                "answer": answers.first(),
                "explanation": format!("{} ({}), from {kind}", r.scorer, r.scorer_version),
                "metadata": {
                    "masses": r.masses,
                    "secondary": r.secondary,
                    "observation": r.observation,
                },
            }),
        );
    }
    json!({
        "id": id,
        "epoch": 1,
        "input": input,
        "target": target,
        "messages": messages,
        "output": out,
        "scores": scores,
        "metadata": {
            "question": r.question,
            "paraphrase": r.paraphrase,
            "permutation": r.permutation,
            "system_prompt": r.system_prompt,
            "prefix": r.prefix,
            "vars": r.vars,
            "adapter": r.adapter,
            "prompt_sha256": r.prompt_sha256,
            "measured_by": kind,
            "score": if r.score.is_some() { "scored" } else { "no score: a refusal or an answer outside the format" },
        },
    })
}

fn metric(name: &str, value: Value) -> Value {
    json!({"name": name, "value": value, "params": {}})
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Standard error of the mean (sample standard deviation / √n); `None` below two values.
fn stderr(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if xs.len() < 2 {
        return None;
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    Some((var / xs.len() as f64).sqrt())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a time (UTC), from the days-since-epoch civil calendar.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_civil_dates() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century year divisible by 400), 12:34:56.
        assert_eq!(at(951_827_696), "2000-02-29T12:34:56Z");
        // 2026-12-07T14:53:37Z.
        assert_eq!(at(1_796_655_217), "2026-12-07T14:53:37Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn the_standard_error_is_over_values() {
        assert_eq!(stderr(&[1.0]), None);
        // Values 0 and 1: sd √0.5, se √0.5/√2 = 0.5.
        assert!((stderr(&[0.0, 1.0]).unwrap() - 0.5).abs() < 1e-12);
    }
}
