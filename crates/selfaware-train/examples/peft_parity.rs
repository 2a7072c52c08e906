//! The selfaware side of the PEFT parity check (see `parity/README.md`).
//!
//! `peft_parity export MODEL.gguf DATA.jsonl OUT [STEPS]` trains STEPS optimizer steps and
//! writes `OUT/init` (the initial adapter, PEFT format), `OUT/final` (after training),
//! `OUT/parity.json` (settings, every step's batches with loss masks, learning rates and losses,
//! five prompts with their last-position logits).
//!
//! `peft_parity check-peft MODEL.gguf OUT` loads the adapter HF PEFT trained (`OUT/peft_made`)
//! into selfaware and compares its logits with those PEFT wrote (`OUT/peft_logits.json`).

use std::path::{Path, PathBuf};

use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::{Engine, Llama, ModelSource};
use selfaware_train::{data, TrainConfig, Trainer};
use selfaware_types::Conversation;
use serde_json::{json, Value};

const PROMPTS: [&str; 5] = [
    "What is the capital of France?",
    "Choose A or B. A: $50 for sure. B: $100 with probability 50%.",
    "Write one sentence about the sea.",
    "How many legs does a spider have?",
    "Answer with a single letter: is fire hot? A) yes B) no",
];

fn last_logits(model: &Llama, ids: &[u32]) -> Vec<f32> {
    let t = ids.len();
    let tokens = u32_matrix(&[ids.to_vec()]).unwrap();
    let positions = u32_matrix(&[(0..t as u32).collect()]).unwrap();
    let mask = build_mask(1, t, t, |_, q, k| k <= q).unwrap();
    let h = model
        .forward(
            &Step {
                tokens: &tokens,
                positions: &positions,
                mask: &mask,
            },
            None,
        )
        .unwrap();
    let last = h
        .narrow(1, t - 1, 1)
        .unwrap()
        .reshape((1, h.dim(2).unwrap()))
        .unwrap();
    model
        .logits(&last)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn prompt_ids(e: &Engine) -> Vec<Vec<u32>> {
    PROMPTS
        .iter()
        .map(|p| e.chat.prompt(&Conversation::user(None, p)).unwrap().ids)
        .collect()
}

pub(crate) fn export(model: &Path, data_path: &Path, out: &Path, steps: usize) {
    let e = Engine::load(&ModelSource::Gguf(model.to_path_buf())).unwrap();
    let ds = data::load(data_path, &e.chat, 2048).unwrap();
    let cfg = TrainConfig {
        seed: 0,
        epochs: 2,
        batch_size: 4,
        lr: 2e-4,
        warmup_steps: 2,
        weight_decay: 0.01,
        max_grad_norm: Some(1.0),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, cfg.clone()).unwrap();
    assert!(
        t.total_steps() >= steps,
        "only {} steps in the plan",
        t.total_steps()
    );
    t.adapter().unwrap().save(&out.join("init")).unwrap();
    for _ in 0..steps {
        let l = t.train_step().unwrap();
        eprintln!(
            "step {} loss {:.6} lr {:.3e} ({:.1} s)",
            l.step, l.loss, l.lr, l.seconds
        );
    }
    t.adapter().unwrap().save(&out.join("final")).unwrap();
    let batches: Vec<Value> = t.plan()[..steps]
        .iter()
        .map(|p| {
            json!(p
                .batches
                .iter()
                .map(|b| b
                    .iter()
                    .map(|&i| json!({"ids": ds.examples[i].ids, "trained": ds.examples[i].trained}))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>())
        })
        .collect();
    let prompts: Vec<Value> = prompt_ids(&e)
        .iter()
        .zip(PROMPTS)
        .map(|(ids, text)| json!({"text": text, "ids": ids, "logits": last_logits(t.model(), ids)}))
        .collect();
    let v = json!({
        "config": cfg,
        "pad_id": e.chat.tokenizer.pad_id,
        "steps": batches,
        "lr": t.log.iter().map(|l| l.lr).collect::<Vec<_>>(),
        "loss": t.log.iter().map(|l| l.loss).collect::<Vec<_>>(),
        "prompts": prompts,
    });
    std::fs::write(out.join("parity.json"), v.to_string()).unwrap();
}

pub(crate) fn check_peft(model: &Path, out: &Path) {
    let mut e = Engine::load(&ModelSource::Gguf(model.to_path_buf())).unwrap();
    e.attach_adapter_dir(&out.join("peft_made")).unwrap();
    let text = std::fs::read_to_string(out.join("peft_logits.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut worst = 0f32;
    for p in v["prompts"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(p["ids"].clone()).unwrap();
        let peft: Vec<f32> = serde_json::from_value(p["logits"].clone()).unwrap();
        let ours = last_logits(&e.model, &ids);
        let d = ours
            .iter()
            .zip(&peft)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(d);
    }
    println!("PEFT-made adapter in selfaware: max |logit difference| {worst:.2e} (limit 1e-3)");
    assert!(worst <= 1e-3);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("export") if args.len() >= 5 => {
            let steps = args.get(5).map(|s| s.parse().unwrap()).unwrap_or(10);
            let out = PathBuf::from(&args[4]);
            std::fs::create_dir_all(&out).unwrap();
            export(Path::new(&args[2]), Path::new(&args[3]), &out, steps)
        }
        Some("check-peft") if args.len() >= 4 => {
            check_peft(Path::new(&args[2]), Path::new(&args[3]))
        }
        _ => {
            eprintln!("usage: peft_parity export MODEL.gguf DATA.jsonl OUT [STEPS]\n       peft_parity check-peft MODEL.gguf OUT");
            std::process::exit(2);
        }
    }
}
