//! `selfaware activations capture` end to end through the real binary, on a tiny model.

mod common;

use common::{ok, s, selfaware, text_of, tiny};

/// The JSON header of a safetensors file.
fn header(path: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

#[test]
fn capture_writes_one_tensor_per_point_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let model = tiny(home);
    let prompts = home.join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n\
         {\"messages\": [{\"role\": \"user\", \"content\": \"A or B?\"}, \
         {\"role\": \"assistant\", \"content\": \"B\"}]}\n",
    )
    .unwrap();
    let out = home.join("acts.safetensors");
    let args = [
        "activations",
        "capture",
        "--model",
        s(&model),
        "--prompts",
        s(&prompts),
        "--points",
        "blocks.*.hook_resid_post,ln_final.hook_normalized",
        "--positions",
        "last",
        "--out",
        s(&out),
    ];
    let text = ok(&selfaware(home, &args));
    assert!(text.contains("2 prompts, 2 rows × 3 points"), "{text}");
    let h = header(&out);
    for p in [
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "ln_final.hook_normalized",
    ] {
        assert_eq!(h[p]["shape"], serde_json::json!([2, 64]), "{p}");
        assert_eq!(h[p]["dtype"], "F32");
    }
    let meta = &h["__metadata__"];
    assert_eq!(meta["positions"], "last");
    assert_eq!(meta["format"], "selfaware-activations/1");
    assert_eq!(meta["model"], s(&model));
    assert_eq!(meta["model_sha256"].as_str().unwrap().len(), 64);

    // A second run without --force leaves the file alone; with it, replaces it.
    let before = std::fs::read(&out).unwrap();
    let o = selfaware(home, &args);
    assert!(!o.status.success());
    let text = text_of(&o);
    assert!(
        text.contains("already exists") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&selfaware(home, &forced));

    // Bad names fail before anything is written.
    let bad = home.join("bad.safetensors");
    let mut a = args.to_vec();
    a[7] = "blocks.2.hook_resid_post";
    a[11] = s(&bad);
    let text = text_of(&selfaware(home, &a));
    assert!(text.contains("layer 2 is out of range"), "{text}");
    a[7] = "blocks.0.resid";
    let text = text_of(&selfaware(home, &a));
    assert!(text.contains("expected blocks.LAYER.HOOK"), "{text}");
    a[7] = "blocks.0.hook_mlp_out";
    a[9] = "first";
    let text = text_of(&selfaware(home, &a));
    assert!(text.contains("expected one of last, all, answer"), "{text}");
    assert!(!bad.exists());
}

#[test]
fn capture_runs_a_battery() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let model = tiny(home);
    let out = home.join("risk.safetensors");
    let text = ok(&selfaware(
        home,
        &[
            "activations",
            "capture",
            "--model",
            s(&model),
            "--battery",
            "risk",
            "--seed",
            "2",
            "--points",
            "blocks.1.hook_mlp_out",
            "--out",
            s(&out),
        ],
    ));
    assert!(text.contains("wrote"), "{text}");
    let h = header(&out);
    assert_eq!(h["__metadata__"]["battery"], "risk");
    assert_eq!(h["__metadata__"]["seed"], "2");
    assert_eq!(h["blocks.1.hook_mlp_out"]["shape"][1], 64);
}

#[test]
fn diff_cosine_lens_and_probe_read_captures() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let model = tiny(home);
    let mut files = Vec::new();
    for (name, topic) in [("a", "bread"), ("b", "stars")] {
        let jsonl: String = (0..6)
            .map(|i| {
                format!(
                    "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Tell me fact {i} \
                     about {topic}.\"}}]}}\n"
                )
            })
            .collect();
        let p = home.join(format!("{name}.jsonl"));
        std::fs::write(&p, jsonl).unwrap();
        let out = home.join(format!("{name}.safetensors"));
        ok(&selfaware(
            home,
            &[
                "activations",
                "capture",
                "--model",
                s(&model),
                "--prompts",
                s(&p),
                "--points",
                "blocks.*.hook_resid_post",
                "--out",
                s(&out),
            ],
        ));
        files.push(out);
    }
    let dirs = home.join("d.safetensors");
    let text = ok(&selfaware(
        home,
        &[
            "activations",
            "diff",
            s(&files[0]),
            s(&files[1]),
            "--out",
            s(&dirs),
        ],
    ));
    assert!(
        text.contains("wrote") && text.contains("2 directions (6 prompts against 6)"),
        "{text}"
    );
    let h = header(&dirs);
    assert_eq!(
        h["blocks.1.hook_resid_post"]["shape"],
        serde_json::json!([64])
    );
    assert_eq!(h["__metadata__"]["format"], "selfaware-directions/1");

    let text = ok(&selfaware(home, &["activations", "cosine", s(&dirs)]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("blocks.0.hook_resid_post\t1.0000\t"),
        "{text}"
    );

    let text = ok(&selfaware(
        home,
        &[
            "activations",
            "lens",
            s(&dirs),
            "--model",
            s(&model),
            "--top",
            "3",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["top"].as_array().unwrap().len(), 3);

    let text = ok(&selfaware(
        home,
        &[
            "activations",
            "probe",
            s(&files[0]),
            s(&files[1]),
            "--folds",
            "3",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &v["results"][1];
    assert_eq!(r["point"], "blocks.1.hook_resid_post");
    assert_eq!(r["n"], 12);
    let acc = r["accuracy"].as_f64().unwrap();
    let iv = r["interval"].as_array().unwrap();
    assert!(iv[0].as_f64().unwrap() <= acc && acc <= iv[1].as_f64().unwrap());

    // A directions file is not a capture.
    let o = selfaware(home, &["activations", "probe", s(&dirs), s(&files[1])]);
    assert!(!o.status.success());
    assert!(
        text_of(&o).contains("not an activation capture"),
        "{}",
        text_of(&o)
    );
}

#[test]
fn capture_with_an_adapter_records_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let model = tiny(home);
    let e =
        selfaware_model::Engine::load(&selfaware_model::ModelSource::Gguf(model.clone())).unwrap();
    let spec = selfaware_model::lora::LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "down_proj".into()],
        use_rslora: false,
    };
    let adapter = home.join("adapter");
    selfaware_model::lora::Adapter::init(&e.model.cfg, &spec, 1)
        .unwrap()
        .save(&adapter)
        .unwrap();
    let prompts = home.join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n",
    )
    .unwrap();
    let out = home.join("a.safetensors");
    ok(&selfaware(
        home,
        &[
            "activations",
            "capture",
            "--model",
            s(&model),
            "--adapter",
            s(&adapter),
            "--prompts",
            s(&prompts),
            "--points",
            "blocks.0.hook_attn_out",
            "--positions",
            "all",
            "--out",
            s(&out),
        ],
    ));
    let meta = &header(&out)["__metadata__"];
    let sha = selfaware_model::file_sha256(&adapter.join("adapter_model.safetensors")).unwrap();
    assert_eq!(meta["adapter_sha256"], sha.as_str());
    assert_eq!(meta["adapter"], s(&adapter));
    assert_eq!(meta["positions"], "all");
}
