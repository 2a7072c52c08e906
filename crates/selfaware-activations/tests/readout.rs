//! Directions, cosines, the logit lens and probes on hand-made capture files whose answers can
//! be worked out by hand.

use std::collections::BTreeMap;
use std::path::Path;

use selfaware_activations::probe::{probe, ProbeConfig};
use selfaware_activations::readout::{
    cosine, cosine_matrix, logit_lens, mean_difference, Capture, Directions,
};
use selfaware_activations::write::{Dtype, StreamWriter, TensorSpec};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};

/// A `last` capture file with the given rows per point (one row per prompt).
fn capture_file(path: &Path, points: &[(&str, Vec<Vec<f32>>)]) {
    let offsets: Vec<i64> = (0..=points[0].1.len() as i64).collect();
    capture_file_with(path, points, &offsets);
}

/// A capture file with the given rows per point and prompt offsets.
fn capture_file_with(path: &Path, points: &[(&str, Vec<Vec<f32>>)], offsets: &[i64]) {
    let rows = points[0].1.len();
    let d = points[0].1[0].len();
    let mut specs: Vec<TensorSpec> = points
        .iter()
        .map(|(p, _)| TensorSpec {
            name: p.to_string(),
            dtype: Dtype::F32,
            shape: vec![rows, d],
        })
        .collect();
    specs.push(TensorSpec {
        name: "offsets".into(),
        dtype: Dtype::I64,
        shape: vec![offsets.len()],
    });
    let meta: BTreeMap<String, String> = [
        ("format", selfaware_activations::FORMAT),
        ("positions", "last"),
        ("model_sha256", "m"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "points".to_string(),
        points.iter().map(|p| p.0).collect::<Vec<_>>().join(","),
    )])
    .collect();
    let w = StreamWriter::create(path, true, specs, &meta).unwrap();
    for (i, (_, r)) in points.iter().enumerate() {
        w.write_f32(i, 0, &r.concat()).unwrap();
    }
    w.write_i64(points.len(), 0, offsets).unwrap();
    w.finish().unwrap();
}

#[test]
fn mean_differences_and_cosines_are_the_hand_computed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.st"), dir.path().join("b.st"));
    capture_file(
        &a,
        &[
            (
                "blocks.0.hook_resid_post",
                vec![vec![1.0, 2.0], vec![3.0, 4.0]],
            ),
            (
                "blocks.1.hook_resid_post",
                vec![vec![1.0, 0.0], vec![1.0, 0.0]],
            ),
        ],
    );
    capture_file(
        &b,
        &[
            (
                "blocks.0.hook_resid_post",
                vec![vec![0.0, 0.0], vec![2.0, 2.0], vec![4.0, 4.0]],
            ),
            ("blocks.1.hook_resid_post", vec![vec![0.0, -1.0]; 3]),
        ],
    );
    let (ca, cb) = (Capture::open(&a).unwrap(), Capture::open(&b).unwrap());
    let d = mean_difference(&ca, &cb).unwrap();
    // A's means (2, 3) and (1, 0); B's (2, 2) and (0, -1).
    assert_eq!(d.get("blocks.0.hook_resid_post").unwrap(), [0.0, 1.0]);
    assert_eq!(d.get("blocks.1.hook_resid_post").unwrap(), [1.0, 1.0]);
    assert_eq!(d.metadata["a_prompts"], "2");
    assert_eq!(d.metadata["b_rows"], "3");
    let out = dir.path().join("d.safetensors");
    d.write(&out, false).unwrap();
    let back = Directions::open(&out).unwrap();
    assert_eq!(back.points, d.points);
    // (0, 1)·(1, 1) / (1 · √2)
    let m = cosine_matrix(&back, &back);
    let s = std::f64::consts::FRAC_1_SQRT_2;
    assert!((m[0][1].unwrap() - s).abs() < 1e-12);
    assert!((m[1][0].unwrap() - s).abs() < 1e-12);
    assert!((m[0][0].unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
    assert!((cosine(&[1.0, 2.0], &[-2.0, -4.0]) + 1.0).abs() < 1e-12);

    // A file that is not a capture, and a point that is not there, are named.
    let e = Capture::open(&out).err().unwrap().to_string();
    assert!(
        e.contains("d.safetensors") && e.contains("not an activation capture"),
        "{e}"
    );
    let e = ca.rows("blocks.5.hook_mlp_out").unwrap_err().to_string();
    assert!(e.contains("has no point `blocks.5.hook_mlp_out`"), "{e}");
}

#[test]
fn the_logit_lens_is_the_unembedding_of_the_normed_direction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, &TinySpec::default()).unwrap();
    let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    let v: Vec<f32> = (0..64).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.5).collect();
    let lens = logit_lens(&e, &v, 3).unwrap();
    // By hand: v / rms(v) ⊙ gain, then one dot product per vocabulary row.
    let gain: Vec<f32> = e.model.norm.to_vec1().unwrap();
    let head: Vec<Vec<f32>> = e.model.lm_head.to_vec2().unwrap();
    let ms = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / 64.0;
    let r = 1.0 / (ms + e.model.cfg.rms_eps).sqrt();
    let h: Vec<f64> = v
        .iter()
        .zip(&gain)
        .map(|(x, g)| *x as f64 * r * *g as f64)
        .collect();
    let logits: Vec<f64> = head
        .iter()
        .map(|row| row.iter().zip(&h).map(|(w, x)| *w as f64 * x).sum())
        .collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<u32> = lens.top.iter().map(|t| t.id).collect();
    assert_eq!(
        top,
        order[..3].iter().map(|&i| i as u32).collect::<Vec<_>>()
    );
    let bottom: Vec<u32> = lens.bottom.iter().map(|t| t.id).collect();
    let last: Vec<u32> = order.iter().rev().take(3).map(|&i| i as u32).collect();
    assert_eq!(bottom, last);
    for t in &lens.top {
        assert!((t.logit as f64 - logits[t.id as usize]).abs() < 1e-4);
    }
    let err = logit_lens(&e, &v[..10], 3).unwrap_err().to_string();
    assert!(err.contains("width 10") && err.contains("64"), "{err}");
}

#[test]
fn a_probe_finds_the_point_where_the_classes_differ() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.st"), dir.path().join("b.st"));
    // Point 0: the classes differ in feature 1; point 1: the same noise in both.
    let noise = |i: usize, k: usize| (((i * 31 + k * 17) % 13) as f32 - 6.0) / 6.0;
    let rows = |shift: f32, informative: bool| -> Vec<Vec<f32>> {
        (0..12)
            .map(|i| {
                (0..4)
                    .map(|k| noise(i, k) + if informative && k == 1 { shift } else { 0.0 })
                    .collect()
            })
            .collect()
    };
    capture_file(
        &a,
        &[
            ("blocks.0.hook_resid_post", rows(5.0, true)),
            ("blocks.1.hook_resid_post", rows(0.0, false)),
        ],
    );
    capture_file(
        &b,
        &[
            ("blocks.0.hook_resid_post", rows(-5.0, true)),
            ("blocks.1.hook_resid_post", rows(0.0, false)),
        ],
    );
    let (ca, cb) = (Capture::open(&a).unwrap(), Capture::open(&b).unwrap());
    let cfg = ProbeConfig {
        folds: 4,
        seed: 3,
        ..ProbeConfig::default()
    };
    let r = probe(&ca, &cb, &cfg).unwrap();
    assert_eq!(r[0].point, "blocks.0.hook_resid_post");
    assert_eq!((r[0].cv.correct, r[0].cv.n), (24, 24));
    // Identical rows in both classes: nothing to learn (deterministic under the seed).
    assert!(r[1].cv.accuracy <= 0.75, "{:?}", r[1].cv);
    assert_eq!(r, probe(&ca, &cb, &cfg).unwrap(), "seeded");
}

#[test]
fn prompts_with_several_rows_are_averaged_per_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("all.st");
    // Prompt 0: rows 0..2, prompt 1: row 2, prompt 2: rows 3..6.
    let rows = vec![
        vec![1.0, 1.0],
        vec![3.0, 5.0],
        vec![5.0, 5.0],
        vec![0.0, 3.0],
        vec![3.0, 0.0],
        vec![6.0, 6.0],
    ];
    capture_file_with(&a, &[("blocks.0.hook_mlp_out", rows)], &[0, 2, 3, 6]);
    let c = Capture::open(&a).unwrap();
    assert_eq!(c.prompts(), 3);
    assert_eq!(
        c.per_prompt("blocks.0.hook_mlp_out").unwrap(),
        vec![vec![2.0, 3.0], vec![5.0, 5.0], vec![3.0, 3.0]]
    );
    // The mean over all rows: (18/6, 20/6).
    let m = c.mean("blocks.0.hook_mlp_out").unwrap();
    assert_eq!(m[0], 3.0);
    assert!((m[1] - 20.0 / 6.0).abs() < 1e-12);
}
