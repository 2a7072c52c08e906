//! Training on tiny random models: loss masking, learning, bit-identical reruns, exact resume
//! (in process and after `kill -9` of a real training process), PEFT adapter round trips.

mod common;

use std::path::{Path, PathBuf};

use selfaware_model::lora::{Adapter, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use selfaware_model::testing::{TinySpec, IM_END};
use selfaware_model::Engine;
use selfaware_train::manifest::{write_outputs, BaseModel, MANIFEST_FILE};
use selfaware_train::trainer::{checkpoints, Event, CHECKPOINT_DIR};
use selfaware_train::{data, Dataset, TrainConfig, TrainError, Trainer};

fn tiny_cfg() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 4,
        lr: 1e-2,
        seed: 3,
        warmup_steps: 1,
        ..TrainConfig::default()
    }
}

fn train(e: &Engine, ds: &Dataset, cfg: TrainConfig, out: Option<&Path>) -> Trainer<'static> {
    // Leak the dataset so the trainer can outlive this frame (tests only).
    let ds: &'static Dataset = Box::leak(Box::new(ds.clone()));
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, ds, cfg).unwrap();
    t.run(out, &mut |_| {}).unwrap();
    t
}

fn adapter_bytes(t: &Trainer, dir: &Path) -> Vec<u8> {
    t.adapter().unwrap().save(dir).unwrap();
    std::fs::read(dir.join(ADAPTER_WEIGHTS)).unwrap()
}

#[test]
fn loss_mask_covers_assistant_content_and_end_of_turn_only() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let p = dir.path().join("d.jsonl");
    std::fs::write(
        &p,
        concat!(
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the an", "weight": 0}, {"role": "user", "content": "again"}, {"role": "assistant", "content": "in"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let ds = data::load(&p, &e.chat, 512).unwrap();
    let ex = &ds.examples[0];
    let trained: Vec<u32> = ex
        .ids
        .iter()
        .zip(&ex.trained)
        .filter(|(_, &t)| t)
        .map(|(&i, _)| i)
        .collect();
    let mut expect = e.chat.answer_ids("in").unwrap();
    expect.push(IM_END);
    assert_eq!(trained, expect);
}

#[test]
fn bad_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let check = |text: &str, max_len: usize, expect: &str| {
        let p = dir.path().join("bad.jsonl");
        std::fs::write(&p, text).unwrap();
        let err = data::load(&p, &e.chat, max_len).unwrap_err().to_string();
        assert!(err.contains(expect), "got {err:?}, expected {expect:?}");
    };
    let good = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "B"}]}"#;
    check(
        &format!("{good}\n\n{{oops\n"),
        512,
        "bad.jsonl:3: not a valid chat example",
    );
    check(
        &format!(
            "{good}\n{}",
            r#"{"messages": [{"role": "bot", "content": "x"}]}"#
        ),
        512,
        "bad.jsonl:2: unknown role",
    );
    check(&format!("{good}\n"), 10, "bad.jsonl:1:");
    check(&format!("{good}\n"), 10, "longer than the 10-token limit");
    check(
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "B", "weight": 0}]}"#,
        512,
        "zero trainable tokens",
    );
    check("", 512, "no examples");
    // Text that cannot fit is refused before tokenizing, naming its size and the bound.
    let bound = 512 * e.chat.tokenizer.max_token_bytes();
    let huge = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}, {{"role": "assistant", "content": "B"}}]}}"#,
        "a".repeat(bound)
    );
    check(
        &format!("{good}\n{huge}\n"),
        512,
        &format!("bad.jsonl:2: {} bytes of message text", bound + 1),
    );
}

#[test]
fn max_token_bytes_bounds_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let t = &e.chat.tokenizer;
    let max = t.max_token_bytes();
    // Every text of n bytes has at least n / max tokens.
    for text in [
        "hello world",
        "<|im_start|>user\nhi<|im_end|>",
        "ééé 123 🙂",
        "   \n\n",
    ] {
        let n = t.encode(text).unwrap().len();
        assert!(n * max >= text.len(), "{text:?}: {n} tokens × {max}");
    }
    assert!(max >= "<|im_start|>".len(), "{max}");
}

#[test]
fn training_lowers_the_loss_and_reruns_are_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let ds = data::load(&common::ab_file(dir.path(), 16), &e.chat, 512).unwrap();
    let cfg = TrainConfig {
        epochs: 4,
        ..tiny_cfg()
    };
    let t1 = train(&e, &ds, cfg.clone(), None);
    assert_eq!(t1.log.len(), 16);
    let first = t1.log[0].loss;
    let last = t1.log.last().unwrap().loss;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert!(
        t1.log.iter().all(|l| l.trained_tokens == 8),
        "4 answers × (B + end-of-turn)"
    );

    let t2 = train(&e, &ds, cfg.clone(), None);
    let (d1, d2) = (dir.path().join("a1"), dir.path().join("a2"));
    assert_eq!(adapter_bytes(&t1, &d1), adapter_bytes(&t2, &d2));
    assert_eq!(
        t1.log.iter().map(|l| l.loss).collect::<Vec<_>>(),
        t2.log.iter().map(|l| l.loss).collect::<Vec<_>>()
    );

    let t3 = train(&e, &ds, TrainConfig { seed: 4, ..cfg }, None);
    assert_ne!(
        adapter_bytes(&t1, &d1),
        adapter_bytes(&t3, &dir.path().join("a3"))
    );
}

#[test]
fn dropout_accumulation_and_cosine_train_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let ds = data::load(&common::ab_file(dir.path(), 12), &e.chat, 512).unwrap();
    let cfg = TrainConfig {
        dropout: 0.1,
        grad_accum: 2,
        batch_size: 2,
        decay: selfaware_train::Decay::Cosine,
        weight_decay: 0.01,
        ..tiny_cfg()
    };
    let t1 = train(&e, &ds, cfg.clone(), None);
    let t2 = train(&e, &ds, cfg.clone(), None);
    assert_eq!(t1.log.len(), 6, "12 examples / (2 × 2) × 2 epochs");
    assert_eq!(
        adapter_bytes(&t1, &dir.path().join("a1")),
        adapter_bytes(&t2, &dir.path().join("a2"))
    );
    // Dropout changes the result.
    let t3 = train(
        &e,
        &ds,
        TrainConfig {
            dropout: 0.0,
            ..cfg
        },
        None,
    );
    // Dropout changes the result (not the first loss: B starts at zero). Without dropout the
    // chat head is run once per batch, so the first losses agree to rounding, not bit for bit.
    let (l1, l3) = (t1.log[0].loss, t3.log[0].loss);
    assert!((l1 - l3).abs() < 1e-5 * l3.abs(), "{l1} vs {l3}");
    assert_ne!(
        adapter_bytes(&t1, &dir.path().join("a1")),
        adapter_bytes(&t3, &dir.path().join("a3"))
    );
}

#[test]
fn adapter_round_trips_and_equals_its_merge() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let ds = data::load(&common::ab_file(dir.path(), 8), &e.chat, 512).unwrap();
    let t = train(&e, &ds, tiny_cfg(), None);
    let out = dir.path().join("adapter");
    let m = write_outputs(
        &t,
        &ds,
        BaseModel {
            reference: "tiny.gguf".into(),
            sha256: e.info.sha256.clone(),
        },
        Some("abc123".into()),
        &out,
    )
    .unwrap();
    assert_eq!(m.steps.len(), t.log.len());
    assert_eq!(m.data.sha256, ds.sha256);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest["git_revision"], "abc123");
    // A LoRA run's files are what they were before steering vectors could be trained: no
    // method, point or vector hash in them.
    for key in ["method", "point"] {
        assert!(manifest["config"].get(key).is_none(), "{key}: {manifest}");
    }
    assert!(manifest.get("steer_sha256").is_none(), "{manifest}");
    let weights = std::fs::read(out.join(ADAPTER_WEIGHTS)).unwrap();
    assert_eq!(
        manifest["adapter_sha256"],
        selfaware_types::sha256_hex(&weights).as_str()
    );
    assert_eq!(
        m.summary(&out),
        format!(
            "adapter written to {} (final loss {:.4}, adapter sha256 {})",
            out.display(),
            t.log.last().unwrap().loss,
            m.adapter_sha256
        )
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["lora_alpha"], 16.0);
    assert_eq!(cfg["base_model_name_or_path"], "tiny.gguf");

    let loaded = Adapter::load(&out).unwrap();
    assert_eq!(loaded.spec, t.adapter().unwrap().spec);
    assert_eq!(loaded.factors.len(), 14);

    let seq = ds.examples[0].ids.clone();
    let logp = |m: &selfaware_model::Llama| {
        selfaware_model::score::sequence_logprobs(m, std::slice::from_ref(&seq), 0)
            .unwrap()
            .remove(0)
    };
    let base = logp(&e.model);
    let mut with = e.model.clone();
    with.attach_adapter(&loaded, &out).unwrap();
    let adapted = logp(&with);
    with.merge_adapters().unwrap();
    let merged = logp(&with);
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(
        diff(&adapted, &merged) < 1e-4,
        "{}",
        diff(&adapted, &merged)
    );
    assert!(
        diff(&adapted, &base) > 1e-2,
        "the adapter changes the model"
    );
    // The trainer's own model gives the same numbers as the reloaded adapter, to rounding: its
    // forward is the training path (fused attention and LoRA kernels), and log-probabilities of
    // the tiny random model reach about 46 here.
    let own = diff(&logp(t.model()), &adapted);
    let scale = adapted.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(own < 1e-5 * scale, "{own} of {scale}");
}

#[test]
fn resume_in_process_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let ds: &'static Dataset = Box::leak(Box::new(
        data::load(&common::ab_file(dir.path(), 12), &e.chat, 512).unwrap(),
    ));
    let cfg = TrainConfig {
        checkpoint_every: 2,
        epochs: 3,
        dropout: 0.05,
        ..tiny_cfg()
    };
    let full = train(&e, ds, cfg.clone(), None);
    let out = dir.path().join("run");
    let mut part = Trainer::new(&e.model, e.chat.tokenizer.pad_id, ds, cfg.clone()).unwrap();
    let mut seen = Vec::new();
    while part.step < 5 {
        part.train_step().unwrap();
        if part.step.is_multiple_of(2) {
            seen.push(part.save_checkpoint(&out).unwrap());
        }
    }
    drop(part);
    assert_eq!(
        checkpoints(&out.join(CHECKPOINT_DIR)).unwrap(),
        vec![seen[1].clone()]
    );
    let mut resumed = Trainer::new(&e.model, e.chat.tokenizer.pad_id, ds, cfg.clone()).unwrap();
    assert_eq!(resumed.resume(&out).unwrap(), Some(seen[1].clone()));
    assert_eq!(resumed.step, 4);
    resumed.run(Some(&out), &mut |_| {}).unwrap();
    let losses = |t: &Trainer| {
        t.log
            .iter()
            .map(|l| (l.step, l.loss, l.lr))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&full), losses(&resumed));
    assert_eq!(
        adapter_bytes(&full, &dir.path().join("f")),
        adapter_bytes(&resumed, &dir.path().join("r"))
    );

    // A checkpoint refuses other settings or data.
    let mut other = Trainer::new(&e.model, 0, ds, TrainConfig { lr: 0.5, ..cfg }).unwrap();
    assert!(matches!(
        other.resume(&out),
        Err(TrainError::Checkpoint { .. })
    ));
}

const CHILD_ENV: &str = "SELFAWARE_TRAIN_TEST_CHILD_DIR";

fn kill_cfg() -> TrainConfig {
    TrainConfig {
        epochs: 12,
        checkpoint_every: 1,
        ..tiny_cfg()
    }
}

fn kill_setup(dir: &Path) -> (Engine, Dataset) {
    let e = common::tiny_engine(dir, &TinySpec::default());
    let ds = data::load(&common::ab_file(dir, 16), &e.chat, 512).unwrap();
    (e, ds)
}

/// Run as a separate process by `resume_after_kill_9_equals_uninterrupted`, which kills it.
#[test]
#[ignore = "helper: the training process that resume_after_kill_9_equals_uninterrupted kills"]
fn child_training_process() {
    let dir = PathBuf::from(std::env::var(CHILD_ENV).expect("run by the kill test"));
    let (e, ds) = kill_setup(&dir);
    let out = dir.join("run");
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, kill_cfg()).unwrap();
    t.run(Some(&out), &mut |ev| {
        if let Event::Checkpoint { .. } = ev {
            // Slow down so the parent can kill mid-run.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
    .unwrap();
}

#[test]
fn resume_after_kill_9_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_training_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let root = dir.path().join("run").join(CHECKPOINT_DIR);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let latest = checkpoints(&root).unwrap_or_default();
        if latest
            .last()
            .is_some_and(|p| !p.ends_with("step-000001") && !p.ends_with("step-000002"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited before it was killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SIGKILL: no chance to clean up.
    let pid = child.id() as i32;
    assert_eq!(kill9(pid), 0);
    child.wait().unwrap();

    let (e, ds) = kill_setup(dir.path());
    let out = dir.path().join("run");
    let mut resumed = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, kill_cfg()).unwrap();
    let from = resumed
        .resume(&out)
        .unwrap()
        .expect("a checkpoint survived");
    assert!(
        resumed.step >= 3 && resumed.step < resumed.total_steps(),
        "killed at step {}",
        resumed.step
    );
    eprintln!("resuming from {}", from.display());
    resumed.run(Some(&out), &mut |_| {}).unwrap();

    let full = train(&e, &ds, kill_cfg(), None);
    assert_eq!(
        adapter_bytes(&full, &dir.path().join("f")),
        adapter_bytes(&resumed, &dir.path().join("r"))
    );
    let losses = |t: &Trainer| t.log.iter().map(|l| l.loss).collect::<Vec<_>>();
    assert_eq!(losses(&full), losses(&resumed));
}

fn kill9(pid: i32) -> i32 {
    // `kill -9 PID` through the command, so the test needs no libc binding.
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    if status.success() {
        0
    } else {
        1
    }
}
