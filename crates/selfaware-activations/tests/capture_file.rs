//! Capture runs on a tiny random model, read back with the `safetensors` crate.

use std::collections::HashMap;
use std::path::Path;

use selfaware_activations::{
    capture, CaptureModel, CaptureSpec, CaptureSummary, Positions, PromptSource,
};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, HookPoint, LayerHook, ModelSource};
use selfaware_types::Provenance;

fn engine(dir: &Path) -> Engine {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, &TinySpec::default()).unwrap();
    Engine::load(&ModelSource::Gguf(path)).unwrap()
}

const PROMPTS: &str = r#"{"messages": [{"role": "user", "content": "Name a colour."}]}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."}]}

{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}
"#;

fn run(
    e: &Engine,
    source: PromptSource,
    positions: Positions,
    out: &Path,
) -> selfaware_activations::Result<CaptureSummary> {
    let spec = CaptureSpec {
        source,
        points: vec![
            HookPoint::block(0, LayerHook::ResidPre),
            HookPoint::block(1, LayerHook::ResidPost),
            HookPoint::LnFinal,
        ],
        positions,
        out: out.to_path_buf(),
        force: false,
    };
    let model = CaptureModel {
        engine: e,
        label: "tiny".into(),
        adapter: None,
    };
    let prov = Provenance {
        tool_version: "test".into(),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let s = capture(&model, &spec, &prov, &mut |d, t| seen.push((d, t)))?;
    assert_eq!(seen.last(), Some(&(s.prompts, s.prompts)));
    Ok(s)
}

struct Read {
    tensors: HashMap<String, (Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

fn read(path: &Path) -> Read {
    let bytes = std::fs::read(path).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    Read {
        tensors: st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, (t.shape().to_vec(), t.data().to_vec())))
            .collect(),
        meta: m.metadata().clone().unwrap(),
    }
}

impl Read {
    fn f32_rows(&self, name: &str) -> Vec<Vec<f32>> {
        let (shape, data) = &self.tensors[name];
        let v: Vec<f32> = data
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        v.chunks(shape[1]).map(|r| r.to_vec()).collect()
    }

    fn i64s(&self, name: &str) -> Vec<i64> {
        self.tensors[name]
            .1
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

/// Equal up to rounding: `last` runs prompts side by side after a shared head, `all` alone.
fn close(a: &[f32], b: &[f32]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= 1e-5 * y.abs().max(1.0))
}

#[test]
fn last_all_and_answer_files_agree_and_record_their_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let src = PromptSource::File(prompts.clone());
    let out = |n: &str| dir.path().join(n);
    let last = run(&e, src.clone(), Positions::Last, &out("last.safetensors")).unwrap();
    let all = run(&e, src.clone(), Positions::All, &out("all.safetensors")).unwrap();
    // `answer` needs every conversation to end with one: the two that do.
    let answered = dir.path().join("a.jsonl");
    let lines: Vec<&str> = PROMPTS
        .lines()
        .filter(|l| l.contains("assistant"))
        .collect();
    std::fs::write(&answered, lines.join("\n")).unwrap();
    let ans = run(
        &e,
        PromptSource::File(answered),
        Positions::Answer,
        &out("ans.safetensors"),
    )
    .unwrap();
    assert_eq!(ans.prompts, 2);
    assert_eq!((last.prompts, last.rows), (3, 3));
    assert_eq!(all.prompts, 3);
    let (l, a, s) = (
        read(&out("last.safetensors")),
        read(&out("all.safetensors")),
        read(&out("ans.safetensors")),
    );
    assert_eq!(l.tensors["blocks.1.hook_resid_post"].0, vec![3, 64]);
    assert_eq!(l.tensors["prompt_sha256"].0, vec![3, 32]);
    assert_eq!(l.i64s("offsets"), vec![0, 1, 2, 3]);
    assert_eq!(l.meta["positions"], "last");
    assert_eq!(l.meta["prompts"], "3");
    assert_eq!(l.meta["model_sha256"], e.info.sha256);
    assert_eq!(l.meta["adapter_sha256"], "");
    assert_eq!(
        l.meta["points"],
        "blocks.0.hook_resid_pre,blocks.1.hook_resid_post,ln_final.hook_normalized"
    );
    assert_eq!(l.meta["prompts_sha256"], last.prompts_sha256);
    assert_eq!(l.meta["prompts_file_sha256"], {
        selfaware_types::sha256_hex(PROMPTS.as_bytes())
    });
    // Prompt hashes are the conversations' JSON, line by line.
    let first: selfaware_types::Conversation =
        serde_json::from_str(PROMPTS.lines().next().unwrap()).unwrap();
    let h = selfaware_types::sha256_hex(&serde_json::to_vec(&first).unwrap());
    assert_eq!(hex::encode(&l.tensors["prompt_sha256"].1[..32]), h);
    assert_eq!(l.tensors["prompt_sha256"].1, a.tensors["prompt_sha256"].1);

    // Layer 0's resid_pre is the embedding row of the token at that position.
    let emb = |id: i64| -> Vec<f32> {
        use candle_core::IndexOp;
        e.model.embed.i(id as usize).unwrap().to_vec1().unwrap()
    };
    for (row, id) in a
        .f32_rows("blocks.0.hook_resid_pre")
        .iter()
        .zip(a.i64s("token_ids"))
    {
        assert_eq!(row, &emb(id));
    }

    // Without an answer, `last` is the last row of `all`; with one, the row before the answer,
    // whose tokens are `answer`'s.
    let offs = a.i64s("offsets");
    let ans_offs = s.i64s("offsets");
    assert_eq!(ans_offs[0], 0);
    let all_ids = a.i64s("token_ids");
    let ans_ids = s.i64s("token_ids");
    for name in ["blocks.1.hook_resid_post", "ln_final.hook_normalized"] {
        let (lr, ar, sr) = (l.f32_rows(name), a.f32_rows(name), s.f32_rows(name));
        assert!(close(&lr[0], &ar[offs[1] as usize - 1]), "{name}");
        for p in 1..3 {
            let a1 = offs[p + 1] as usize;
            let (s0, s1) = (ans_offs[p - 1] as usize, ans_offs[p] as usize);
            let n = s1 - s0;
            // The answer's tokens sit in `all` just before the trailing newline token.
            let start = a1 - 1 - n;
            assert_eq!(all_ids[start..a1 - 1], ans_ids[s0..s1], "prompt {p}");
            for k in 0..n {
                assert!(close(&sr[s0 + k], &ar[start + k]), "prompt {p} row {k}");
            }
            assert!(close(&lr[p], &ar[start - 1]), "prompt {p}");
            assert_eq!(all_ids[start - 1], l.i64s("token_ids")[p]);
        }
    }
    assert_eq!(
        ans_offs.last().copied().unwrap() as usize,
        ans.rows,
        "offsets end at the row count"
    );
}

#[test]
fn bad_inputs_name_the_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let p = dir.path().join("p.jsonl");
    let out = dir.path().join("o.safetensors");
    let err = |text: &str, pos: Positions| {
        std::fs::write(&p, text).unwrap();
        run(&e, PromptSource::File(p.clone()), pos, &out)
            .unwrap_err()
            .to_string()
    };
    let m = err(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n{\"messages\": []}\n",
        Positions::Last,
    );
    assert!(m.contains("p.jsonl line 2") && m.contains("empty"), "{m}");
    let m = err(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n",
        Positions::Answer,
    );
    assert!(
        m.contains("line 1") && m.contains("no final assistant message"),
        "{m}"
    );
    let m = err("\n\n", Positions::Last);
    assert!(m.contains("no prompts"), "{m}");
    assert!(!out.exists(), "a failed capture leaves no output");
    std::fs::write(&out, "mine").unwrap();
    let m = err(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n",
        Positions::Last,
    );
    assert!(m.contains("already exists") && m.contains("--force"), "{m}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
}

#[test]
fn a_battery_captures_its_rendered_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let out = dir.path().join("b.safetensors");
    let name = "risk";
    let s = run(
        &e,
        PromptSource::Battery {
            name: name.into(),
            seed: 3,
        },
        Positions::Last,
        &out,
    )
    .unwrap();
    let battery = selfaware_eval::builtin::battery(name).unwrap();
    let items = selfaware_eval::render::render_battery(
        &battery,
        selfaware_eval::render::RenderOptions {
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.prompts, items.len());
    let r = read(&out);
    assert_eq!(r.meta["battery"], name);
    assert_eq!(r.meta["seed"], "3");
    assert_eq!(
        r.tensors["ln_final.hook_normalized"].0,
        vec![items.len(), 64]
    );
}

#[test]
fn the_capture_bench_times_scoring_capture_and_steering_on_the_same_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let v =
        selfaware_activations::bench::capture_vs_scoring(&e, &PromptSource::File(prompts), 2, None)
            .unwrap();
    assert_eq!(v["prompts"], 3);
    assert_eq!(v["reps"], 2);
    let s = &v["steering"];
    assert_eq!(s["one_vector"], "blocks.1.hook_resid_post (alpha 0.1)");
    assert_eq!(s["every_layer"], "blocks.*.hook_resid_post (2 vectors)");
    for k in [
        "one_vector_ratio_best",
        "one_vector_ratio_median",
        "every_layer_ratio_best",
        "every_layer_ratio_median",
    ] {
        assert!(s[k].as_f64().unwrap() > 0.0, "{k}: {s}");
    }
}

#[test]
fn in_memory_captures_equal_the_files_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    // More prompts than one `last` chunk, so chunks are crossed.
    let mut lines: Vec<String> = PROMPTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    for i in 0..70 {
        lines.push(format!(
            r#"{{"messages": [{{"role": "user", "content": "Count to {i}."}}]}}"#
        ));
    }
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let convs: Vec<selfaware_types::Conversation> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let points = [
        HookPoint::block(0, LayerHook::ResidPre),
        HookPoint::block(1, LayerHook::ResidPost),
        HookPoint::LnFinal,
    ];
    for positions in [Positions::Last, Positions::All] {
        let out = dir.path().join(format!("{positions}.safetensors"));
        let s = run(&e, PromptSource::File(prompts.clone()), positions, &out).unwrap();
        let f = read(&out);
        let m =
            selfaware_activations::capture_conversations(&e, &convs, &points, positions).unwrap();
        assert_eq!((m.rows, m.d), (s.rows, 64), "{positions}");
        assert_eq!(m.offsets.len(), s.prompts + 1);
        let offsets: Vec<i64> = m.offsets.iter().map(|&o| o as i64).collect();
        assert_eq!(offsets, f.i64s("offsets"), "{positions}");
        let ids: Vec<i64> = m.token_ids.iter().map(|&t| t as i64).collect();
        assert_eq!(ids, f.i64s("token_ids"), "{positions}");
        assert_eq!(
            m.prompt_sha256.concat(),
            hex::encode(&f.tensors["prompt_sha256"].1)
        );
        for (name, values) in &m.points {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(bytes, f.tensors[name.as_str()].1, "{positions} {name}");
        }
    }
    // Bad input names the conversation: the first one has no answer to capture.
    let err = match selfaware_activations::capture_conversations(
        &e,
        &convs,
        &points,
        Positions::Answer,
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("conversations without answers captured at `answer`"),
    };
    assert!(
        err.contains("line 1") && err.contains("no final assistant message"),
        "{err}"
    );
    let err = match selfaware_activations::capture_conversations(&e, &convs, &[], Positions::Last) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("captured no points"),
    };
    assert!(err.contains("no hook points"), "{err}");
}
