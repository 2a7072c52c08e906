//! Tokenizers rebuilt from GGUF metadata: each supported pre-tokenizer splits text the way its
//! Hugging Face original does, visible through which merges can apply.

use selfaware_chat::gguf::write::gguf_bytes;
use selfaware_chat::{ChatFormat, ChatTemplate, GgufFile, GgufValue};
use selfaware_types::{Conversation, Message};

/// GPT-2's byte-to-unicode symbols.
fn byte_symbols() -> Vec<String> {
    let mut extra = 0u32;
    (0..=255u32)
        .map(|b| {
            let printable =
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let c = if printable {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn file(pre: &str) -> (tempfile::NamedTempFile, Vec<String>) {
    let mut tokens = byte_symbols();
    tokens.extend(["12", "123", "Ġh", "Ġhi", "<|im_start|>", "<|im_end|>"].map(String::from));
    let n = tokens.len();
    let mut types = vec![GgufValue::I32(1); n];
    types[n - 2] = GgufValue::I32(3);
    types[n - 1] = GgufValue::I32(3);
    let s = |x: &str| GgufValue::String(x.into());
    let md = vec![
        ("tokenizer.ggml.model".to_string(), s("gpt2")),
        ("tokenizer.ggml.pre".to_string(), s(pre)),
        (
            "tokenizer.ggml.tokens".to_string(),
            GgufValue::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            GgufValue::Array(types),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            GgufValue::Array(["1 2", "12 3", "Ġ h", "Ġh i"].map(s).to_vec()),
        ),
        (
            "tokenizer.ggml.eos_token_id".to_string(),
            GgufValue::U32(n as u32 - 1),
        ),
        ("tokenizer.chat_template".to_string(), s(TEMPLATE)),
    ];
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), gguf_bytes(&md, &[])).unwrap();
    (f, tokens)
}

fn pieces(pre: &str, text: &str) -> Vec<String> {
    let (f, tokens) = file(pre);
    let g = GgufFile::open(f.path()).unwrap();
    let chat = ChatFormat::from_gguf(&g).unwrap();
    chat.tokenizer
        .encode(text)
        .unwrap()
        .into_iter()
        .map(|id| tokens[id as usize].clone())
        .collect()
}

#[test]
fn digits_split_as_each_pre_tokenizer_says() {
    // SmolLM and Qwen2 split every digit; Llama 3 keeps runs of up to three.
    assert_eq!(pieces("smollm", "1234"), ["1", "2", "3", "4"]);
    assert_eq!(pieces("qwen2", "1234"), ["1", "2", "3", "4"]);
    assert_eq!(pieces("llama-bpe", "1234"), ["123", "4"]);
    // A space stays attached to the following word in all of them.
    for pre in ["smollm", "qwen2", "llama-bpe"] {
        assert_eq!(pieces(pre, "a hi"), ["a", "Ġhi"], "{pre}");
    }
}

#[test]
fn special_tokens_are_matched_whole_and_spans_come_from_the_template() {
    let (f, tokens) = file("smollm");
    let g = GgufFile::open(f.path()).unwrap();
    let chat = ChatFormat::from_gguf(&g).unwrap();
    let ids = chat.tokenizer.encode("<|im_start|>hi<|im_end|>").unwrap();
    assert_eq!(tokens[ids[0] as usize], "<|im_start|>");
    assert_eq!(tokens[*ids.last().unwrap() as usize], "<|im_end|>");

    let mut weighted = Message::assistant("no");
    weighted.weight = Some(0);
    let conv = Conversation::new(vec![
        Message::system("sys"),
        Message::user("q1"),
        weighted,
        Message::user("q2"),
        Message::assistant("a2"),
    ]);
    let enc = chat.encode(&conv).unwrap();
    let text_of = |r: std::ops::Range<usize>| chat.tokenizer.decode(&enc.ids[r], false).unwrap();
    assert_eq!(enc.spans.len(), 5);
    assert_eq!(text_of(enc.spans[2].tokens.clone()), "no<|im_end|>");
    assert!(!enc.spans[2].trained, "weight 0 is not trained");
    assert_eq!(text_of(enc.spans[4].tokens.clone()), "a2<|im_end|>");
    assert!(enc.spans[4].trained);
    assert_eq!(enc.n_trained(), enc.spans[4].tokens.len());
    // Spans tile the conversation apart from role headers and separators.
    assert!(enc
        .spans
        .windows(2)
        .all(|w| w[0].tokens.end <= w[1].tokens.start));
    // The prompt for the last answer is exactly the text before its span.
    let prompt = chat
        .prompt(&Conversation::new(conv.messages[..4].to_vec()))
        .unwrap();
    assert_eq!(prompt.ids, enc.ids[..enc.spans[4].tokens.start]);
}

#[test]
fn a_prompt_may_not_end_with_the_assistant() {
    let (f, _) = file("smollm");
    let chat = ChatFormat::from_gguf(&GgufFile::open(f.path()).unwrap()).unwrap();
    let conv = Conversation::new(vec![Message::user("q"), Message::assistant("a")]);
    assert!(chat.prompt(&conv).is_err());
}

/// The tiny `pre` tokenizer with its own chat template `source`.
fn with_template(pre: &str, source: &str) -> ChatFormat {
    let (f, _) = file(pre);
    let chat = ChatFormat::from_gguf(&GgufFile::open(f.path()).unwrap()).unwrap();
    ChatFormat {
        tokenizer: chat.tokenizer,
        template: ChatTemplate::new(source, "bare", "", "<|im_end|>").unwrap(),
    }
}

/// Found by review while fuzzing (issue #17): a generation prompt longer than the assistant
/// message rendered after it put the message's start after its end, and slicing the text
/// between them panicked. It is now an error naming the message.
#[test]
fn a_generation_prompt_longer_than_the_answer_is_an_error_not_a_panic() {
    let chat = with_template(
        "smollm",
        "{% for m in messages %}{{ m['content'] }}{% endfor %}\
         {% if add_generation_prompt %}AAAA{% endif %}",
    );
    // "qAAAA": the prompt before the answer is "qAAAA", the rendering through it "qA".
    let conv = Conversation::new(vec![
        Message::user("q"),
        Message::assistant("A"),
        Message::user("AAA"),
    ]);
    let e = chat.encode(&conv).unwrap_err().to_string();
    assert!(
        e.contains("message 1 (assistant) has no span") && e.contains("bare"),
        "{e}"
    );
}

/// Found by review while fuzzing (issue #17): the error for a message boundary inside a token
/// quoted the text 20 bytes either side of it, and panicked when that cut a character.
#[test]
fn a_boundary_inside_a_token_next_to_multibyte_text_is_an_error_not_a_panic() {
    let chat = with_template(
        "llama-bpe",
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    );
    // "é" × 15 then "1" | "2": the merge "1 2" makes one token across the boundary at byte
    // 31, and byte 11 falls inside an "é".
    let conv = Conversation::new(vec![
        Message::user(format!("{}1", "é".repeat(15))),
        Message::assistant("2"),
    ]);
    let e = chat.encode(&conv).unwrap_err().to_string();
    assert!(
        e.contains("a message boundary at byte 31 falls inside a token")
            && e.contains(&format!("{}12", "é".repeat(10))),
        "{e}"
    );
}

/// Found by fuzzing (target `chat_template`, out of memory at 2.4 GB): a template that prints a
/// string multiplied 6 666 668 times renders 20 MB of its own text, which the tokenizer then
/// turned into gigabytes. A rendering may add at most 1 MiB besides its messages' text.
#[test]
fn fuzz_a_template_that_multiplies_text_is_an_error_not_an_oom() {
    let chat = with_template("smollm", "#{{- \" r9\" \n*6666668}}\nr\nr");
    let conv = Conversation::new(vec![Message::user("q"), Message::assistant("a")]);
    let e = chat.encode(&conv).unwrap_err().to_string();
    assert!(
        e.contains("the rendering is 20000009 bytes for 2 bytes of messages")
            && e.contains("more than 1048576 bytes besides four times the messages' text"),
        "{e}"
    );
    // The same text a few times over is fine.
    let chat = with_template(
        "smollm",
        "{{ \" r9\" * 1000 }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
    );
    assert_eq!(
        chat.template.render(&conv.messages, false).unwrap().len(),
        3002
    );
}

/// A template that loops without end stops when it has run out of fuel, naming the limit.
#[test]
fn a_template_that_never_ends_runs_out_of_fuel() {
    let chat = with_template(
        "smollm",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    );
    let e = chat
        .template
        .render(&[Message::user("q")], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than 10000000 instructions"), "{e}");
}
