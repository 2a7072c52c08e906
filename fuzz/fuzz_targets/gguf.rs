//! The GGUF reader and everything a model load reads from the header: the tokenizer and chat
//! template rebuilt from metadata, the model configuration, the dequantized weights and the
//! model assembled from them.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use selfaware_chat::{ChatFormat, GgufFile};
use selfaware_model::{weights, Config, Llama};

fuzz_target!(init: selfaware_fuzz::write_generated_seeds(), |data: &[u8]| {
    let Ok(g) = GgufFile::from_bytes(data.to_vec(), Path::new("fuzz.gguf")) else {
        return;
    };
    for t in &g.tensors {
        assert_eq!(g.tensor_bytes(t).len() as u64, t.n_bytes);
    }
    if let Ok(chat) = ChatFormat::from_gguf(&g) {
        let conv = selfaware_fuzz::sample_conversation();
        let _ = chat.encode(&conv);
    }
    if let Ok(cfg) = Config::from_gguf(&g) {
        if let Ok(w) = weights::load_gguf(&g, &cfg) {
            let _ = Llama::load(&w, &cfg);
        }
    }
});
