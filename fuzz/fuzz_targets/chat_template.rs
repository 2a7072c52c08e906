//! The chat template renderer (selfaware-chat): compiling a template, rendering a conversation
//! with and without the generation prompt, and finding each message's token span with the tiny
//! model's tokenizer.
//!
//! Input: the template source, optionally followed by a NUL byte and the conversation, one
//! message per line: a role letter (`s`, `u`, `a`; `A` for an untrained assistant message) and
//! the content (`uHi\naHello`); without a NUL, a fixed conversation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_chat::{ChatFormat, ChatTemplate};
use selfaware_types::{Conversation, Message, Role};

fuzz_target!(|data: &[u8]| {
    let (source, messages) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let conv = match messages {
        Some(m) => match std::str::from_utf8(m) {
            Ok(m) => parse_messages(m),
            Err(_) => return,
        },
        None => selfaware_fuzz::sample_conversation(),
    };
    let Ok(template) = ChatTemplate::new(source, "fuzz", "<|im_start|>", "<|im_end|>") else {
        return;
    };
    let _ = template.render(&conv.messages, true);
    let chat = ChatFormat {
        tokenizer: selfaware_fuzz::tiny_chat().tokenizer.clone(),
        template,
    };
    let _ = chat.encode(&conv);
    let _ = chat.prompt(&conv);
});

fn parse_messages(text: &str) -> Conversation {
    let mut conv = Conversation::default();
    for line in text.split('\n') {
        let mut chars = line.chars();
        let (role, weight) = match chars.next() {
            Some('s') => (Role::System, None),
            Some('u') => (Role::User, None),
            Some('a') => (Role::Assistant, None),
            Some('A') => (Role::Assistant, Some(0)),
            _ => continue,
        };
        let mut m = Message::new(role, chars.as_str());
        m.weight = weight;
        conv.push(m);
    }
    conv
}
