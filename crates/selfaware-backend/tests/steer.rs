//! A local model carries its steering (set when a `ModelRef` is opened, replaced by
//! `with_steering`, kept by `with_adapter`) and says what it is; a served model refuses it.

use std::path::Path;

use selfaware_backend::{Backend, ModelRef, OpenOptions};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::SteerSpec;
use selfaware_types::Conversation;

fn opts(home: &Path) -> OpenOptions<'_> {
    OpenOptions {
        home,
        python: "python3",
        api_key_env: None,
        estimate: false,
        lookup: &|_| None,
        log: &|_| {},
    }
}

fn vector_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("v.safetensors");
    let v: Vec<f32> = (0..64).map(|i| ((i % 9) as f32 - 4.0) / 2.0).collect();
    let t = candle_core::Tensor::new(v, &candle_core::Device::Cpu).unwrap();
    let m = std::collections::HashMap::from([("blocks.1.hook_resid_pre".to_string(), t)]);
    candle_core::safetensors::save(&m, &p).unwrap();
    p
}

fn lp(b: &dyn Backend) -> f64 {
    let c = Conversation::user(Some("Answer with a letter."), "A or B?");
    b.score_options(&c, &["A".into(), "B".into()])
        .unwrap()
        .candidates[0]
        .logprob
}

#[test]
fn a_local_model_carries_its_steering_and_records_it() {
    let t = tempfile::tempdir().unwrap();
    let gguf = t.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &TinySpec::default()).unwrap();
    let f = vector_file(t.path());
    let spec: SteerSpec = format!("{}:blocks.1.hook_resid_pre:5", f.display())
        .parse()
        .unwrap();
    let r = ModelRef::parse(gguf.to_str().unwrap()).unwrap();
    let plain = r.open(&opts(t.path())).unwrap();
    let steered = r
        .clone()
        .with_steering(std::slice::from_ref(&spec))
        .open(&opts(t.path()))
        .unwrap();
    assert!(plain.steering().is_empty());
    let rec = steered.steering();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].sha256, selfaware_model::file_sha256(&f).unwrap());
    assert_eq!(rec[0].point, "blocks.1.hook_resid_pre");
    assert!(
        steered.model_id().contains("+steer:"),
        "{}",
        steered.model_id()
    );
    assert!((lp(steered.as_ref()) - lp(plain.as_ref())).abs() > 1e-3);
    // Steering added to the plain backend later equals steering set when opened; an empty
    // list takes it off again.
    let later = plain.with_steering(std::slice::from_ref(&spec)).unwrap();
    assert_eq!(lp(later.as_ref()), lp(steered.as_ref()));
    assert_eq!(later.model_id(), steered.model_id());
    let off = steered.with_steering(&[]).unwrap();
    assert_eq!(lp(off.as_ref()), lp(plain.as_ref()));
    assert_eq!(off.model_id(), plain.model_id());
    assert!(off.steering().is_empty());
    // An adapter attached to a steered model keeps the steering.
    let adapter = t.path().join("adapter");
    let spec_lora = selfaware_model::lora::LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into()],
        use_rslora: false,
    };
    let cfg = &steered.engine().unwrap().model.cfg;
    selfaware_model::lora::Adapter::init(cfg, &spec_lora, 1)
        .unwrap()
        .save(&adapter)
        .unwrap();
    let both = steered.with_adapter(&adapter).unwrap();
    assert_eq!(both.steering(), rec);
    assert!(both.model_id().contains("+steer:") && both.model_id().contains("+adapter:"));
}

#[test]
fn a_served_model_asked_to_steer_says_it_cannot() {
    let t = tempfile::tempdir().unwrap();
    let spec: SteerSpec = "v.safetensors:blocks.1.hook_resid_pre:5".parse().unwrap();
    let err = ModelRef::parse("http://127.0.0.1:9/v1#base")
        .unwrap()
        .with_steering(&[spec])
        .open(&opts(t.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`base` cannot steer (v.safetensors:blocks.1.hook_resid_pre:5)")
            && err.contains("local model"),
        "{err}"
    );
}
