//! The server's `POST /v1/chat/completions` request handling before a model runs
//! (selfaware-server): the body parsed as OpenAI's wire format, checked against the default
//! limits and a local model's capabilities, then rendered with the tiny model's chat template.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_backend::Capabilities;
use selfaware_server::{check_chat_request, parse_chat_request, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(w) = parse_chat_request(data) else {
        return;
    };
    let caps = Capabilities {
        exact_scoring: true,
        max_top_logprobs: 20,
        max_n: 64,
        deterministic_seed: true,
    };
    let Ok(p) = check_chat_request(w, &ServerConfig::default(), &caps) else {
        return;
    };
    let chat = selfaware_fuzz::tiny_chat();
    if p.add_generation_prompt {
        let _ = chat.prompt(&p.req.conversation);
    } else {
        let _ = chat.encode(&p.req.conversation);
    }
});
