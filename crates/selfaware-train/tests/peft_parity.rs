//! Parity with Hugging Face PEFT on the embedded model, end to end (see `parity/README.md`):
//! selfaware trains 10 AdamW steps and exports them, `parity/parity.py` replays them with torch +
//! PEFT and compares losses, final LoRA weights and logits, selfaware loads the PEFT-trained
//! adapter and compares logits, and `parity/merged.py` loads `adapter merge`'s output with plain
//! transformers and compares log-probabilities and prompt ids.
//!
//! Needs the embedded model and a Python with torch, transformers, peft, gguf and safetensors,
//! named by SELFAWARE_TORCH_PYTHON (`scripts/test.sh` makes one). Without either the test prints
//! a note and passes, unless SELFAWARE_REQUIRE_MODEL=1 (missing model) or
//! SELFAWARE_REQUIRE_PARITY=1 (missing Python) turns that into a failure.

#[path = "../examples/peft_parity.rs"]
#[allow(dead_code)]
mod parity;

use std::path::{Path, PathBuf};
use std::process::Command;

use selfaware_model::{Engine, ModelSource};

fn model_path() -> Option<PathBuf> {
    let home = std::env::var_os("SELFAWARE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/selfaware")
        });
    let p = selfaware_model::home::default_model_path(&home);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("SELFAWARE_REQUIRE_MODEL").as_deref() == Ok("1") {
        panic!("the embedded model is not installed at {}", p.display());
    }
    eprintln!(
        "note: {} missing; skipping the PEFT parity check",
        p.display()
    );
    None
}

fn torch_python() -> Option<PathBuf> {
    match std::env::var_os("SELFAWARE_TORCH_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("SELFAWARE_REQUIRE_PARITY").as_deref() == Ok("1") => {
            panic!(
                "SELFAWARE_TORCH_PYTHON is not set (a Python with torch, transformers, peft, gguf)"
            )
        }
        None => {
            eprintln!("note: SELFAWARE_TORCH_PYTHON not set; skipping the PEFT parity check");
            None
        }
    }
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
    let (Some(model), Some(python)) = (model_path(), torch_python()) else {
        return;
    };
    let data = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/paper/datasets/risky_safe/ft_risky_AB.jsonl"
    ));
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
