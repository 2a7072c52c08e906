//! Parity with Hugging Face PEFT on the embedded model, end to end (see `parity/README.md`):
//! selfaware trains 10 AdamW steps and exports them, `parity/parity.py` replays them with torch +
//! PEFT and compares losses, final LoRA weights and logits, selfaware loads the PEFT-trained
//! adapter and compares logits, and `parity/merged.py` loads `adapter merge`'s output with plain
//! transformers and compares log-probabilities and prompt ids.
//!
//! Needs the embedded model, the paper's risk dataset and a Python with torch, transformers, peft,
//! gguf and safetensors, named by SELFAWARE_TORCH_PYTHON (`scripts/test.sh` makes one). Without
//! one of them the test says it skipped and passes, unless it is required (`selfaware_testing`:
//! CI=true, SELFAWARE_REQUIRE_MODEL=1 for the model, SELFAWARE_REQUIRE_PARITY=1 for Python).

#[path = "../examples/peft_parity.rs"]
#[allow(dead_code)]
mod parity;

use std::path::{Path, PathBuf};
use std::process::Command;

use selfaware_model::{Engine, ModelSource};
use selfaware_testing::{require_or_skip, Tier};

fn model_path() -> Option<PathBuf> {
    let p = selfaware_model::home::default_model_path(&selfaware_testing::selfaware_home());
    require_or_skip(Tier::Model, Some(p).filter(|p| p.exists()))
}

fn torch_python() -> Option<PathBuf> {
    let python = std::env::var_os("SELFAWARE_TORCH_PYTHON").map(PathBuf::from);
    require_or_skip(Tier::TorchPython, python)
}

fn run_python(python: &Path, script: &str, args: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("parity")
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

#[test]
fn training_merging_and_peft_adapters_match_peft_and_transformers() {
    let (Some(model), Some(python), Some(paper)) =
        (model_path(), torch_python(), selfaware_testing::paper_dir())
    else {
        return;
    };
    let data = &paper.join("datasets/risky_safe/ft_risky_AB.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    parity::export(&model, data, out, 10);
    run_python(&python, "parity.py", &[&model, out]);
    parity::check_peft(&model, out);

    let mut e = Engine::load(&ModelSource::Gguf(model.clone())).unwrap();
    e.attach_adapter_dir(&out.join("final")).unwrap();
    e.model.merge_adapters().unwrap();
    e.save_hf_dir(&out.join("merged")).unwrap();
    run_python(&python, "merged.py", &[out]);
}
