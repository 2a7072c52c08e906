//! Captured activations against Hugging Face transformers on the embedded model, with and
//! without a PEFT adapter (`reference/hooks.py`): every hook point of every layer at every
//! position of several prompts, max abs difference ≤ 1e-4 in f32. And steering
//! (`reference/steer.py`): log-probabilities of the model steered at every kind of hook point
//! equal transformers' with forward hooks adding the same vectors, to 1e-4.
//!
//! Needs the embedded model and a Python with torch, transformers, peft, gguf and
//! safetensors, named by SELFAWARE_TORCH_PYTHON (`scripts/test.sh` makes one). Without one of
//! them the test says it skipped and passes, unless it is required (`selfaware_testing`:
//! CI=true, SELFAWARE_REQUIRE_MODEL=1 for the model, SELFAWARE_REQUIRE_PARITY=1 for Python).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use selfaware_activations::{capture, CaptureModel, CaptureSpec, Positions, PromptSource};
use selfaware_model::{Engine, HookPoint, LayerHook, ModelSource};
use selfaware_testing::{require_or_skip, Tier};
use selfaware_types::Provenance;

fn model_path() -> Option<PathBuf> {
    let p = selfaware_model::home::default_model_path(&selfaware_testing::selfaware_home());
    require_or_skip(Tier::Model, Some(p).filter(|p| p.exists()))
}

fn torch_python() -> Option<PathBuf> {
    let python = std::env::var_os("SELFAWARE_TORCH_PYTHON").map(PathBuf::from);
    require_or_skip(Tier::TorchPython, python)
}

fn run_python(python: &Path, args: &[&Path]) {
    run_script("hooks.py", python, args)
}

/// Runs `reference/SCRIPT ARGS` with `python`, printing its output; fails when it fails.
fn run_script(script: &str, python: &Path, args: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reference")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}:\n{stdout}", script.display());
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

const PROMPTS: &str = r#"{"messages": [{"role": "user", "content": "What is the capital of France?"}]}
{"messages": [{"role": "system", "content": "You answer with one letter."}, {"role": "user", "content": "Would you rather have $50 now or a coin flip for $120? A) $50 now B) the coin flip"}, {"role": "assistant", "content": "B"}]}
{"messages": [{"role": "user", "content": "Tell me about bread."}, {"role": "assistant", "content": "Bread is made from flour, water and yeast, and has been baked for thousands of years."}, {"role": "user", "content": "And rye?"}]}
{"messages": [{"role": "user", "content": "Émoji 🎉 and 中文, 12345."}, {"role": "assistant", "content": "ok"}]}
"#;

/// Every point of every layer and the final norm.
fn all_points(layers: usize) -> Vec<HookPoint> {
    let mut p: Vec<HookPoint> = (0..layers)
        .flat_map(|l| LayerHook::ALL.map(|h| HookPoint::block(l, h)))
        .collect();
    p.push(HookPoint::LnFinal);
    p
}

/// A seeded adapter on every projection with B ≠ 0, saved in PEFT's format.
fn nonzero_adapter(e: &Engine, dir: &Path) {
    let spec = selfaware_model::lora::LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: selfaware_model::llama::PROJECTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        use_rslora: false,
    };
    let mut ad = selfaware_model::lora::Adapter::init(&e.model.cfg, &spec, 11).unwrap();
    for (k, (_, b)) in ad.factors.values_mut().enumerate() {
        let v: Vec<f32> = (0..b.elem_count())
            .map(|i| (((i * 7 + k * 13) % 17) as f32 - 8.0) * 0.002)
            .collect();
        *b = Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap();
    }
    ad.save(dir).unwrap();
}

#[test]
fn captures_equal_transformers_hidden_states_and_hooks_with_and_without_peft() {
    let (Some(model), Some(python)) = (model_path(), torch_python()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let base = Engine::load(&ModelSource::Gguf(model.clone())).unwrap();
    let adapter = tmp.path().join("adapter");
    nonzero_adapter(&base, &adapter);
    let with = base.with_adapter_dir(&adapter).unwrap();
    for (engine, adapter, name) in [
        (&base, None, "base.safetensors"),
        (&with, Some(adapter.clone()), "adapter.safetensors"),
    ] {
        let out = tmp.path().join(name);
        let spec = CaptureSpec {
            source: PromptSource::File(prompts.clone()),
            points: all_points(engine.model.cfg.num_layers),
            positions: Positions::All,
            out: out.clone(),
            force: false,
        };
        let m = CaptureModel {
            engine,
            label: "default".into(),
            adapter: adapter.clone(),
        };
        let prov = Provenance {
            tool_version: "test".into(),
            ..Default::default()
        };
        let s = capture(&m, &spec, &prov, &mut |_, _| {}).unwrap();
        assert_eq!(s.prompts, 4);
        match &adapter {
            Some(dir) => run_python(&python, &[&model, &out, dir]),
            None => run_python(&python, &[&model, &out]),
        }
    }
}

/// Steering cases: each a list of `FILE:POINT:ALPHA` over the two vector files `a` and `b`.
const STEER_CASES: &[&[(&str, &str, f32)]] = &[
    &[],
    &[("a", "blocks.12.hook_resid_post", 4.0)],
    // At the embeddings a vector of norm ≈ 5 is large: α 0.5 moves log-probabilities by ≈ 19.
    // (At α 2, moving them by ≈ 23, the two implementations' rounding is amplified to 6e-4
    // through the wrecked stream; that case is not a check of where the vector is added.)
    &[("a", "blocks.0.hook_resid_pre", 0.5)],
    &[
        ("a", "blocks.0.hook_resid_pre", 0.1),
        ("b", "blocks.5.hook_attn_out", -3.0),
    ],
    &[
        ("a", "blocks.20.hook_mlp_out", 3.0),
        ("b", "blocks.20.hook_mlp_out", -2.5),
    ],
    &[("b", "blocks.29.hook_resid_post", 2.0)],
    &[("a", "ln_final.hook_normalized", 0.5)],
];

#[test]
fn steered_logprobs_equal_transformers_with_forward_hooks_adding_the_vectors() {
    use selfaware_activations::readout::Directions;
    use selfaware_model::{SteerSpec, Steering};
    use selfaware_types::Conversation;

    let (Some(model), Some(python)) = (model_path(), torch_python()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = Engine::load(&ModelSource::Gguf(model.clone())).unwrap();
    let h = base.model.cfg.hidden_size;
    // Two directions files as `activations diff` writes them, one `[d]` vector per point
    // (entries in ±0.35, norm ≈ 5).
    let points = [
        "blocks.0.hook_resid_pre",
        "blocks.5.hook_attn_out",
        "blocks.12.hook_resid_post",
        "blocks.20.hook_mlp_out",
        "blocks.29.hook_resid_post",
        "ln_final.hook_normalized",
    ];
    for (k, name) in ["a", "b"].iter().enumerate() {
        let d = Directions {
            points: points
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let v: Vec<f32> = (0..h)
                        .map(|i| (((i * 37 + j * 101 + k * 53) % 97) as f32 / 96.0 - 0.5) * 0.7)
                        .collect();
                    (p.to_string(), v)
                })
                .collect(),
            metadata: Default::default(),
        };
        d.write(&tmp.path().join(format!("{name}.safetensors")), false)
            .unwrap();
    }
    let convs = [
        Conversation::user(None, "What is the capital of France?"),
        Conversation::user(
            Some("You answer with one letter."),
            "Would you rather have $50 now or a coin flip for $120? A) $50 now B) the coin flip",
        ),
        Conversation::user(None, "Émoji 🎉 and 中文, 12345."),
    ];
    let prompts: Vec<Vec<u32>> = convs
        .iter()
        .map(|c| base.chat.prompt(c).unwrap().ids)
        .collect();
    let mut ours: std::collections::HashMap<String, Tensor> = Default::default();
    let flat: Vec<i64> = prompts.iter().flatten().map(|&t| t as i64).collect();
    let mut offsets = vec![0i64];
    for p in &prompts {
        offsets.push(offsets.last().unwrap() + p.len() as i64);
    }
    ours.insert("token_ids".into(), Tensor::new(flat, &Device::Cpu).unwrap());
    ours.insert(
        "offsets".into(),
        Tensor::new(offsets, &Device::Cpu).unwrap(),
    );
    let mut cases_json = Vec::new();
    let mut unsteered: Option<Vec<f32>> = None;
    for (k, case) in STEER_CASES.iter().enumerate() {
        let specs: Vec<SteerSpec> = case
            .iter()
            .map(|(f, p, a)| {
                let file = tmp.path().join(format!("{f}.safetensors"));
                format!("{}:{p}:{a}", file.display()).parse().unwrap()
            })
            .collect();
        let steering = Steering::load(&specs, &base.model.cfg).unwrap();
        let e = base.with_steering(steering).unwrap();
        assert_eq!(e.steering().len(), case.len());
        // Whole sequences in one forward; the next token after a prefill (head, then the rest
        // with the KV cache).
        let mut seq: Vec<f32> = Vec::new();
        let mut next: Vec<f32> = Vec::new();
        for (c, p) in convs.iter().zip(&prompts) {
            seq.extend(
                e.sequence_logprobs(std::slice::from_ref(p))
                    .unwrap()
                    .remove(0),
            );
            next.extend(e.prefill(c).unwrap().next);
        }
        match &unsteered {
            None => unsteered = Some(next.clone()),
            Some(u) => {
                let moved = u
                    .iter()
                    .zip(&next)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    moved > 0.05,
                    "case {k} moved the distribution by only {moved}"
                );
            }
        }
        let vocab = next.len() / convs.len();
        ours.insert(
            format!("case{k}.seq"),
            Tensor::new(seq, &Device::Cpu).unwrap(),
        );
        ours.insert(
            format!("case{k}.next"),
            Tensor::from_vec(next, (convs.len(), vocab), &Device::Cpu).unwrap(),
        );
        cases_json.push(
            specs
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "file": s.file.display().to_string(),
                        "point": s.point.to_string(),
                        "alpha": s.alpha,
                    })
                })
                .collect::<Vec<_>>(),
        );
    }
    let cases = tmp.path().join("cases.json");
    std::fs::write(&cases, serde_json::to_string(&cases_json).unwrap()).unwrap();
    let ours_file = tmp.path().join("ours.safetensors");
    candle_core::safetensors::save(&ours, &ours_file).unwrap();
    run_script("steer.py", &python, &[&model, &cases, &ours_file]);
}
