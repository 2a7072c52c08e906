//! Captured activations against Hugging Face transformers on the embedded model, with and
//! without a PEFT adapter (`reference/hooks.py`): every hook point of every layer at every
//! position of several prompts, max abs difference ≤ 1e-4 in f32.
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/hooks.py");
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
