//! Model formats: Hugging Face directories (single file, sharded, Qwen2 biases), every supported
//! GGUF weight type, and clear errors for what is not supported.

use selfaware_chat::GgmlType;
use selfaware_model::testing::{tiny_gguf_bytes, write_hf_dir, write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};
use selfaware_types::Conversation;

fn gguf_engine(dir: &std::path::Path, spec: &TinySpec) -> Engine {
    let path = dir.join(format!("tiny-{}.gguf", spec.seed));
    write_tiny_gguf(&path, spec).unwrap();
    Engine::load(&ModelSource::Gguf(path)).unwrap()
}

fn next_dist(e: &Engine) -> Vec<f32> {
    e.prefill(&Conversation::user(None, "Hello there, how are you?"))
        .unwrap()
        .next
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn hugging_face_directories_match_the_gguf_they_were_written_from() {
    let tmp = tempfile::tempdir().unwrap();
    for (spec, model_type, shards) in [
        (TinySpec::default(), "llama", 1),
        (
            TinySpec {
                seed: 1,
                tied: false,
                ..TinySpec::default()
            },
            "mistral",
            3,
        ),
        (
            TinySpec {
                seed: 2,
                qkv_bias: true,
                ..TinySpec::default()
            },
            "qwen2",
            2,
        ),
    ] {
        let g = gguf_engine(tmp.path(), &spec);
        let dir = tmp.path().join(format!("hf-{model_type}"));
        write_hf_dir(&g, &dir, model_type, shards).unwrap();
        let source = ModelSource::from_path(&dir).unwrap();
        assert!(matches!(source, ModelSource::HfDir(_)));
        let h = Engine::load(&source).unwrap();
        assert_eq!(h.info.architecture, model_type);
        assert_eq!(h.info.attention_bias, spec.qkv_bias);
        assert_eq!(h.info.tied_embeddings, spec.tied);
        let conv = Conversation::user(None, "Hi");
        assert_eq!(
            g.chat.prompt(&conv).unwrap().ids,
            h.chat.prompt(&conv).unwrap().ids
        );
        let d = max_diff(&next_dist(&g), &next_dist(&h));
        assert!(d < 1e-5, "{model_type}: {d}");
    }
}

#[test]
fn every_supported_gguf_weight_type_loads_close_to_f32() {
    let tmp = tempfile::tempdir().unwrap();
    // K-quants need rows of 256 values.
    let base = TinySpec {
        hidden: 256,
        ffn: 512,
        heads: 4,
        kv_heads: 2,
        scale: 0.05,
        ..TinySpec::default()
    };
    let reference = gguf_engine(tmp.path(), &base);
    let want = next_dist(&reference);
    for (i, (ty, tol)) in [
        (GgmlType::F16, 1e-2),
        (GgmlType::BF16, 5e-2),
        (GgmlType::Q8_0, 5e-2),
        (GgmlType::Q6K, 0.1),
        (GgmlType::Q4K, 0.5),
        (GgmlType::Q4_0, 0.5),
        (GgmlType::Q4_1, 0.5),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = TinySpec {
            linear_type: ty,
            ..base.clone()
        };
        let path = tmp.path().join(format!("q{i}.gguf"));
        write_tiny_gguf(&path, &spec).unwrap();
        let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
        assert!(
            e.info.weight_types.contains_key(ty.name()),
            "{:?}",
            e.info.weight_types
        );
        // Dequantized projection weights stay close to the f32 originals.
        let w = &e.model.layers[0].gate_proj.weight;
        let r = &reference.model.layers[0].gate_proj.weight;
        let rel = ((w - r)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            / r.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap())
        .sqrt();
        assert!(rel < tol, "{}: relative weight error {rel}", ty.name());
        let d = max_diff(&want, &next_dist(&e));
        assert!(
            d < 10.0 * tol + 0.05,
            "{}: log-prob difference {d}",
            ty.name()
        );
    }
}

#[test]
fn unsupported_inputs_get_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = tmp.path().join("gpt2.gguf");
    std::fs::write(
        &arch,
        tiny_gguf_bytes(&TinySpec {
            arch: "gpt2".into(),
            ..TinySpec::default()
        }),
    )
    .unwrap();
    let e = Engine::load(&ModelSource::Gguf(arch.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("architecture `gpt2` is not supported") && e.contains("gpt2.gguf"),
        "{e}"
    );
    assert!(e.contains("qwen2"), "lists what is supported: {e}");

    let pre = tmp.path().join("pre.gguf");
    std::fs::write(
        &pre,
        tiny_gguf_bytes(&TinySpec {
            pre: "falcon".into(),
            ..TinySpec::default()
        }),
    )
    .unwrap();
    let e = Engine::load(&ModelSource::Gguf(pre))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("pre-tokenizer `falcon` is not supported") && e.contains("smollm"),
        "{e}"
    );

    let bytes = tiny_gguf_bytes(&TinySpec::default());
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let e = Engine::load(&ModelSource::Gguf(cut))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is truncated") && e.contains("cut.gguf"), "{e}");

    let magic = tmp.path().join("magic.gguf");
    std::fs::write(&magic, b"not a model at all").unwrap();
    let e = Engine::load(&ModelSource::Gguf(magic))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is not a GGUF file"), "{e}");

    let missing = ModelSource::from_path(&tmp.path().join("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("no such file") && missing.contains("default"),
        "{missing}"
    );
    let emptydir = tmp.path().join("empty");
    std::fs::create_dir(&emptydir).unwrap();
    let e = ModelSource::from_path(&emptydir).unwrap_err().to_string();
    assert!(e.contains("no config.json"), "{e}");
}

/// `bytes` of a GGUF file with the value of the u32 metadata key `key` set to `value`.
fn patch_u32(bytes: &mut [u8], key: &str, value: u32) {
    let mut written = (key.len() as u64).to_le_bytes().to_vec();
    written.extend_from_slice(key.as_bytes());
    written.extend_from_slice(&4u32.to_le_bytes());
    let at = bytes
        .windows(written.len())
        .position(|w| w == written)
        .expect("the key is written with type u32")
        + written.len();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Found by fuzzing (target `gguf`): a valid file whose `block_count` says 4 294 967 295 layers
/// aborted the process (`memory allocation of 1488206077952 bytes failed`) while reserving room
/// for that many layers. It is now the error of the first layer the file lacks.
#[test]
fn fuzz_huge_block_count_is_an_error_not_an_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = tiny_gguf_bytes(&TinySpec::default());
    patch_u32(&mut bytes, "llama.block_count", u32::MAX);
    let path = tmp.path().join("layers.gguf");
    std::fs::write(&path, bytes).unwrap();
    let e = Engine::load(&ModelSource::Gguf(path))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tensor `model.layers.2.input_layernorm.weight` is missing"),
        "{e}"
    );
}
