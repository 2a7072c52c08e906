//! Steering-vector training on tiny random models: a vector trained on text sampled from a
//! model steered by a known vector recovers that vector; the written file is what `--steer`
//! reads; checkpoints resume exactly; settings that do not fit are refused.

mod common;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::score::sequence_logprobs;
use selfaware_model::testing::TinySpec;
use selfaware_model::{
    Engine, HookPoint, KvCache, LayerHook, Llama, SteerSpec, SteerVector, Steering,
};
use selfaware_train::batch::Batch;
use selfaware_train::data::{self, Example};
use selfaware_train::loss::batch_nll;
use selfaware_train::manifest::{write_outputs, BaseModel, MANIFEST_FILE};
use selfaware_train::trainer::{checkpoints, CHECKPOINT_DIR, OPTIMIZER_FILE, STEER_FILE};
use selfaware_train::{Dataset, TrainConfig, TrainError, TrainMethod, Trainer};
use selfaware_types::Conversation;

/// One forward step of `ids` at positions `start..`, after `cache`'s positions, returning the
/// log-probabilities of the token after the last one.
fn step_logprobs(m: &Llama, cache: &mut KvCache, ids: &[u32], start: usize) -> Vec<f32> {
    let t = ids.len();
    let mask = build_mask(1, t, start + t, |_, q, k| k <= start + q).unwrap();
    let hidden = m
        .forward(
            &Step {
                tokens: &u32_matrix(&[ids.to_vec()]).unwrap(),
                positions: &u32_matrix(&[(start as u32..(start + t) as u32).collect()]).unwrap(),
                mask: &mask,
            },
            Some(cache),
        )
        .unwrap();
    let last = hidden.squeeze(0).unwrap().narrow(0, t - 1, 1).unwrap();
    m.log_softmax(&last)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// `n` chat prompts, each followed by `k` tokens drawn (temperature 1, seeded) from `m`; the
/// drawn tokens are the trained ones. Stop tokens are drawn like any other, so every trained
/// token is a draw from the model's next-token distribution.
fn sampled_dataset(e: &Engine, m: &Llama, n: usize, k: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let examples = (0..n)
        .map(|i| {
            let text = format!(
                "Item {i}: tell me about {} and {} in {} words.",
                ["cats", "rivers", "prime numbers", "the moon", "bread"][i % 5],
                ["winter", "music", "maps", "tea"][i % 4],
                3 + i * 7 % 20
            );
            let mut ids = e.chat.prompt(&Conversation::user(None, &text)).unwrap().ids;
            let p = ids.len();
            let mut cache = m.new_cache();
            let mut lp = step_logprobs(m, &mut cache, &ids, 0);
            for q in p..p + k {
                let next = selfaware_model::sample::choose(&lp, 1.0, 1.0, &mut rng);
                ids.push(next);
                lp = step_logprobs(m, &mut cache, &[next], q);
            }
            let trained = (0..ids.len()).map(|q| q >= p).collect();
            Example {
                line: i + 1,
                ids,
                trained,
            }
        })
        .collect();
    Dataset {
        path: "<sampled>".into(),
        sha256: format!("sampled-{seed}"),
        examples,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot =
        |x: &[f32], y: &[f32]| -> f64 { x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum() };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

fn steer_cfg(point: HookPoint) -> TrainConfig {
    TrainConfig {
        method: TrainMethod::Steer,
        point: Some(point),
        ..TrainConfig::default()
    }
}

/// A tiny model with an untied output matrix: a tied one puts most of the next-token mass on
/// repeating the current token, and so little of it carries information about the vector.
fn untied() -> TinySpec {
    TinySpec {
        tied: false,
        ..TinySpec::default()
    }
}

#[test]
fn a_vector_trained_on_samples_of_a_steered_model_recovers_its_vector() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &untied());
    let h = e.model.cfg.hidden_size;
    let point = HookPoint::block(0, LayerHook::ResidPost);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Entries in [-2, 2): a norm of about 9, several times the stream's, so that the samples
    // say much about it.
    let truth: Vec<f32> = (0..h).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
    let steered = e
        .with_steering(
            Steering::new(&[SteerVector::new(point, truth.clone(), 1.0)], &e.model.cfg).unwrap(),
        )
        .unwrap();
    // 48 prompts × 16 drawn tokens = 768 trained tokens for 64 unknowns.
    let ds = sampled_dataset(&e, &steered.model, 48, 16, 1);
    let cfg = TrainConfig {
        epochs: 60,
        batch_size: 48,
        lr: 0.2,
        seed: 2,
        ..steer_cfg(point)
    };
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, cfg).unwrap();
    assert_eq!(t.total_steps(), 60);
    t.run(None, &mut |_| {}).unwrap();
    let got = t.steer().unwrap().vector().unwrap();
    let c = cosine(&got, &truth);
    eprintln!("cosine(trained, truth) = {c:.4}");
    assert!(c >= 0.9, "cosine {c}");
    // Trained to the end: the data fit at least as well as by the vector that made them (the
    // maximum-likelihood vector, off the truth only by sampling noise), and far better than by
    // no vector.
    let mean_nll = |m: &Llama| {
        let exs: Vec<_> = ds.examples.iter().collect();
        let b = Batch::new(&exs, e.chat.tokenizer.pad_id, true).unwrap();
        batch_nll(m, &b, None).unwrap().to_scalar::<f32>().unwrap() / b.n_trained as f32
    };
    let (trained, truth_nll, zero) = (
        mean_nll(t.model()),
        mean_nll(&steered.model),
        mean_nll(&e.model),
    );
    assert!(
        trained <= truth_nll && truth_nll < 0.5 * zero,
        "{trained} {truth_nll} {zero}"
    );
}

/// The tiny model and the A/B file, loaded through the training data path.
fn ab_setup(dir: &Path, n: usize) -> (Engine, &'static Dataset) {
    let e = common::tiny_engine(dir, &TinySpec::default());
    let ds = data::load(&common::ab_file(dir, n), &e.chat, 512).unwrap();
    (e, Box::leak(Box::new(ds)))
}

fn small_cfg(point: HookPoint) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 4,
        lr: 0.05,
        seed: 3,
        ..steer_cfg(point)
    }
}

/// The JSON header of a safetensors file: 8 bytes of length, then the header.
fn header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

#[test]
fn the_written_vector_is_what_steer_reads_and_alpha_one_is_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let (e, ds) = ab_setup(dir.path(), 8);
    let point = HookPoint::block(1, LayerHook::ResidPost);
    let out = dir.path().join("run");
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, ds, small_cfg(point)).unwrap();
    t.run(Some(&out), &mut |_| {}).unwrap();
    let base = BaseModel {
        reference: "tiny.gguf".into(),
        sha256: e.info.sha256.clone(),
    };
    let m = write_outputs(&t, ds, base, Some("abc123".into()), &out).unwrap();

    // The folder: the vector, the manifest, the checkpoints; no adapter.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [CHECKPOINT_DIR, STEER_FILE, MANIFEST_FILE]);
    let file = out.join(STEER_FILE);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["config"]["method"], "steer");
    assert_eq!(manifest["config"]["point"], "blocks.1.hook_resid_post");
    let sha = selfaware_types::sha256_hex(&std::fs::read(&file).unwrap());
    assert_eq!(manifest["steer_sha256"], sha.as_str());
    assert!(manifest.get("adapter_sha256").is_none(), "{manifest}");
    assert_eq!(manifest["steps"].as_array().unwrap().len(), t.total_steps());
    assert_eq!(
        m.summary(&out),
        format!(
            "steering vector written to {} (final loss {:.4}, sha256 {sha}); use it with --steer \
             {}:blocks.1.hook_resid_post:1",
            file.display(),
            t.log.last().unwrap().loss,
            file.display()
        )
    );

    // One F32 tensor [hidden] named as the point; the run's provenance in the header.
    let head = header(&file);
    let tensor = &head["blocks.1.hook_resid_post"];
    assert_eq!(tensor["dtype"], "F32");
    assert_eq!(tensor["shape"], serde_json::json!([64]));
    let meta = &head["__metadata__"];
    let steps = t.total_steps().to_string();
    for (k, v) in [
        ("method", "steer"),
        ("point", "blocks.1.hook_resid_post"),
        ("base_model", "tiny.gguf"),
        ("base_model_sha256", e.info.sha256.as_str()),
        ("data_sha256", ds.sha256.as_str()),
        ("seed", "3"),
        ("steps", steps.as_str()),
        ("tool_version", selfaware_types::TOOL_VERSION),
        ("git_revision", "abc123"),
    ] {
        assert_eq!(meta[k], v, "{k}");
    }
    assert_eq!(head.as_object().unwrap().len(), 2, "{head}");

    // `--steer FILE:POINT:1` reads it unchanged and gives the trained model's numbers.
    let spec: SteerSpec = format!("{}:blocks.1.hook_resid_post:1", file.display())
        .parse()
        .unwrap();
    let trained = t.steer().unwrap().vector().unwrap();
    assert_eq!(spec.read_vector().unwrap(), trained);
    let steered = e
        .with_steering(Steering::load(&[spec], &e.model.cfg).unwrap())
        .unwrap();
    let seqs: Vec<Vec<u32>> = ds.examples.iter().map(|x| x.ids.clone()).collect();
    let pad = e.chat.tokenizer.pad_id;
    let flat = |m: &Llama| -> Vec<f32> {
        sequence_logprobs(m, &seqs, pad)
            .unwrap()
            .into_iter()
            .flatten()
            .collect()
    };
    let (read, own, plain) = (flat(&steered.model), flat(t.model()), flat(&e.model));
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let scale = read.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(diff(&read, &own) < 1e-5 * scale, "{}", diff(&read, &own));
    assert!(diff(&read, &plain) > 1e-2, "the vector changes the model");
}

#[test]
fn a_steer_run_resumes_from_its_checkpoint_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (e, ds) = ab_setup(dir.path(), 12);
    let point = HookPoint::block(0, LayerHook::ResidPre);
    let cfg = TrainConfig {
        epochs: 3,
        checkpoint_every: 2,
        ..small_cfg(point)
    };
    let pad = e.chat.tokenizer.pad_id;
    let mut full = Trainer::new(&e.model, pad, ds, cfg.clone()).unwrap();
    full.run(None, &mut |_| {}).unwrap();
    assert!(full.total_steps() > 5);

    let out = dir.path().join("run");
    let mut part = Trainer::new(&e.model, pad, ds, cfg.clone()).unwrap();
    while part.step < 5 {
        part.train_step().unwrap();
        if part.step.is_multiple_of(2) {
            part.save_checkpoint(&out).unwrap();
        }
    }
    drop(part);
    let ckpt = checkpoints(&out.join(CHECKPOINT_DIR)).unwrap();
    assert_eq!(ckpt.len(), 1);
    let mut files: Vec<String> = std::fs::read_dir(&ckpt[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [OPTIMIZER_FILE, STEER_FILE, "trainer_state.json"],
        "{ckpt:?}"
    );

    let mut resumed = Trainer::new(&e.model, pad, ds, cfg.clone()).unwrap();
    assert_eq!(resumed.resume(&out).unwrap(), Some(ckpt[0].clone()));
    assert_eq!(resumed.step, 4);
    resumed.run(Some(&out), &mut |_| {}).unwrap();
    let losses = |t: &Trainer| t.log.iter().map(|l| (l.loss, l.lr)).collect::<Vec<_>>();
    assert_eq!(losses(&full), losses(&resumed));
    let bits = |t: &Trainer| -> Vec<u32> {
        let v = t.steer().unwrap().vector().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    assert_eq!(bits(&full), bits(&resumed));
    assert!(bits(&full).iter().any(|&b| b != 0), "the vector moved");

    // The checkpoint is a steering vector's: LoRA settings, or another point, do not resume it.
    for other in [
        TrainConfig::default(),
        TrainConfig {
            point: Some(HookPoint::block(1, LayerHook::ResidPre)),
            ..cfg
        },
    ] {
        let mut t = Trainer::new(&e.model, pad, ds, other).unwrap();
        let err = t.resume(&out).unwrap_err().to_string();
        assert!(err.contains("different settings"), "{err}");
    }
}

#[test]
fn settings_that_do_not_fit_a_steering_vector_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (e, ds) = ab_setup(dir.path(), 2);
    let point = HookPoint::block(1, LayerHook::ResidPost);
    let field = |cfg: TrainConfig| match cfg.validate() {
        Err(TrainError::Config { field, message }) => format!("{field}: {message}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let no_point = field(TrainConfig {
        point: None,
        ..steer_cfg(point)
    });
    assert!(
        no_point.starts_with("point: a steering vector needs"),
        "{no_point}"
    );
    let lora_point = field(TrainConfig {
        point: Some(point),
        ..TrainConfig::default()
    });
    assert!(
        lora_point.starts_with("point: is for a steering vector"),
        "{lora_point}"
    );
    let dropout = field(TrainConfig {
        dropout: 0.1,
        ..steer_cfg(point)
    });
    assert!(dropout.starts_with("dropout:"), "{dropout}");
    // LoRA's own settings are not a steering run's concern.
    steer_cfg(point).validate().unwrap();
    TrainConfig {
        rank: 0,
        ..steer_cfg(point)
    }
    .validate()
    .unwrap();

    let pad = e.chat.tokenizer.pad_id;
    let err = |base: &Llama, cfg: TrainConfig| match Trainer::new(base, pad, ds, cfg) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected a refusal"),
    };
    let far = err(
        &e.model,
        steer_cfg(HookPoint::block(5, LayerHook::ResidPost)),
    );
    assert!(far.contains("layer 5 is out of range"), "{far}");
    let h = e.model.cfg.hidden_size;
    let steered = e
        .with_steering(
            Steering::new(&[SteerVector::new(point, vec![1.0; h], 2.0)], &e.model.cfg).unwrap(),
        )
        .unwrap();
    let twice = err(&steered.model, steer_cfg(point));
    assert!(
        twice.contains("already steered (2 × blocks.1.hook_resid_post)"),
        "{twice}"
    );
    let adapter =
        selfaware_model::Adapter::init(&e.model.cfg, &TrainConfig::default().lora_spec(), 0)
            .unwrap();
    match Trainer::with_adapter(&e.model, pad, ds, steer_cfg(point), adapter) {
        Err(TrainError::Config { field, .. }) => assert_eq!(field, "method"),
        _ => panic!("an adapter is not a steering vector"),
    }
}
