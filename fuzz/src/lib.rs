//! Helpers shared by the fuzz targets: the tiny model's chat format (a real tokenizer and chat
//! template rebuilt from GGUF metadata) and the generated seeds.

use std::path::Path;
use std::sync::OnceLock;

use selfaware_chat::{ChatFormat, GgufFile};
use selfaware_model::testing::{tiny_gguf_bytes, TinySpec};
use selfaware_types::{Conversation, Message};

/// The smallest tiny model that loads: one layer, 8 wide. Its GGUF bytes (about 13 kB, most of
/// them the vocabulary) seed the `gguf` target.
pub fn tiny_spec() -> TinySpec {
    TinySpec {
        layers: 1,
        hidden: 8,
        heads: 2,
        kv_heads: 1,
        ffn: 8,
        ..TinySpec::default()
    }
}

/// The tiny model's tokenizer and chat template (SmolLM2's), built once.
pub fn tiny_chat() -> &'static ChatFormat {
    static CHAT: OnceLock<ChatFormat> = OnceLock::new();
    CHAT.get_or_init(|| {
        let g = GgufFile::from_bytes(tiny_gguf_bytes(&tiny_spec()), Path::new("tiny.gguf"))
            .expect("the tiny model's header is valid");
        ChatFormat::from_gguf(&g).expect("the tiny model has a chat format")
    })
}

/// A conversation with every role, a trained and an untrained assistant turn.
pub fn sample_conversation() -> Conversation {
    let mut untrained = Message::assistant("B");
    untrained.weight = Some(0);
    Conversation::new(vec![
        Message::system("You answer with one letter."),
        Message::user("Pick A or B."),
        untrained,
        Message::user("Again, é ☃."),
        Message::assistant("A"),
    ])
}

/// When `SELFAWARE_FUZZ_SEEDS` names a folder, writes the seeds that exist only as code into
/// its subfolders `gguf/` (tiny models) and `chat_template/` (the tiny model's template, alone
/// and followed by a conversation), then exits; `scripts/fuzz.sh` runs the `gguf` target once
/// this way.
pub fn write_generated_seeds() {
    let Some(root) = std::env::var_os("SELFAWARE_FUZZ_SEEDS") else {
        return;
    };
    let root = Path::new(&root);
    let templates = root.join("chat_template");
    std::fs::create_dir_all(&templates).expect("create the seed folder");
    let template = selfaware_model::testing::SMOLLM_TEMPLATE;
    std::fs::write(templates.join("smollm.jinja"), template).expect("write a seed");
    let mut with_conv = template.as_bytes().to_vec();
    with_conv.push(0);
    with_conv.extend_from_slice("sBe brief.\nuPick A or B.\nAB\nuAgain, é ☃.\naA".as_bytes());
    std::fs::write(templates.join("smollm-conversation"), with_conv).expect("write a seed");
    let dir = root.join("gguf");
    std::fs::create_dir_all(&dir).expect("create the seed folder");
    let mut specs = vec![("tiny-f32", tiny_spec())];
    for (name, ty) in [
        ("tiny-q8_0", selfaware_chat::GgmlType::Q8_0),
        ("tiny-q4_0", selfaware_chat::GgmlType::Q4_0),
    ] {
        // Quantized rows need 32 elements.
        let mut s = tiny_spec();
        s.hidden = 32;
        s.ffn = 32;
        s.linear_type = ty;
        specs.push((name, s));
    }
    let mut qwen = tiny_spec();
    qwen.arch = "qwen2".into();
    qwen.pre = "qwen2".into();
    qwen.qkv_bias = true;
    qwen.tied = false;
    specs.push(("tiny-qwen2", qwen));
    for (name, spec) in specs {
        std::fs::write(dir.join(format!("{name}.gguf")), tiny_gguf_bytes(&spec))
            .expect("write a seed");
    }
    std::process::exit(0);
}
