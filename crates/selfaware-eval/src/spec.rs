//! What to ask, as typed data: the settings of a battery evaluation ([`EvalSpec`]) and of a
//! behaviour probe ([`ProbeSpec`]). The binary builds them from its flags, experiments build
//! them from their files, and `selfaware-ask` runs them; [`EvalSpec::to_args`] and
//! [`ProbeSpec::to_args`] are the one place their command-line spelling is written (the
//! binary's tests parse it back).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::render::NewlineMode;

/// Which exact probability a numeric scale uses for the number `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumericMode {
    /// P(the answer is exactly `n`, then end of turn).
    #[default]
    Complete,
    /// P(the answer starts with the number `n`, followed by a non-digit or end of turn).
    StartsWith,
}

impl NumericMode {
    pub const ALL: [NumericMode; 2] = [NumericMode::Complete, NumericMode::StartsWith];

    pub fn name(self) -> &'static str {
        match self {
            NumericMode::Complete => "complete",
            NumericMode::StartsWith => "starts-with",
        }
    }
}

impl NewlineMode {
    pub const ALL: [NewlineMode; 2] = [NewlineMode::Parity, NewlineMode::Fixed];

    pub fn name(self) -> &'static str {
        match self {
            NewlineMode::Parity => "parity",
            NewlineMode::Fixed => "fixed",
        }
    }
}

/// Appends `--flag value` to a command line when `value` is set.
pub fn push_flag(args: &mut Vec<String>, flag: &str, value: Option<String>) {
    if let Some(v) = value {
        args.push(format!("--{flag}"));
        args.push(v);
    }
}

/// Parses one of `all` by its name.
fn by_name<T: Copy>(
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &'static str,
) -> Result<T> {
    all.iter()
        .copied()
        .find(|v| name(*v) == s)
        .ok_or_else(|| EvalError::Input {
            what,
            message: format!(
                "{s:?}: expected one of {}",
                all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
            ),
        })
}

impl FromStr for NumericMode {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        by_name(s, &Self::ALL, Self::name, "numeric")
    }
}

impl FromStr for NewlineMode {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        by_name(s, &Self::ALL, Self::name, "newlines")
    }
}

/// The LLM judge of `judged_word`, `language` and `judged_ratings` questions: any
/// OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    pub url: String,
    pub model: String,
    /// The environment variable that holds the judge's API key (never the key).
    #[serde(default)]
    pub key_env: Option<String>,
    /// Longest judge reply in tokens.
    #[serde(default = "default_judge_max_tokens")]
    pub max_tokens: usize,
}

/// The judge's default reply length (the CLI's `--judge-max-tokens`).
pub const DEFAULT_JUDGE_MAX_TOKENS: usize = 32;

fn default_judge_max_tokens() -> usize {
    DEFAULT_JUDGE_MAX_TOKENS
}

/// A battery evaluation: what to ask (the model is opened separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// A built-in battery name or a TOML file.
    pub battery: String,
    /// Output folder: records.jsonl (appended, resumable), eval_manifest.json, battery.toml.
    pub out: PathBuf,
    /// Adapter directories to evaluate, each with its own records; `None` is the model alone.
    /// Empty: the model alone.
    #[serde(default)]
    pub adapters: Vec<Option<PathBuf>>,
    /// Samples per prompt for free-form questions.
    pub samples: usize,
    /// Sampling temperature for free-form questions.
    pub temperature: f64,
    /// Seed of the `{sep_suffix}` draws and of every prompt's samples.
    pub seed: u64,
    /// The paper's `questions/` folder: questions with an `import` take its text.
    pub paper_questions: Option<PathBuf>,
    /// At most this many rendered prompts of each question, taken round-robin over its
    /// paraphrases.
    pub limit: Option<usize>,
    /// Ask only these questions (ids); None: all.
    pub questions: Option<Vec<String>>,
    pub newlines: NewlineMode,
    pub numeric: NumericMode,
    /// Completion length for free-form questions (default: the question's hint, else by kind).
    pub max_tokens: Option<usize>,
    /// The run's target word (the codeword), for `target_word` questions.
    pub target_word: Option<String>,
    /// Codewords to compare the target word against (the other conditions' codewords), for
    /// the log-odds of exactly scored word-list questions.
    #[serde(default)]
    pub contrast_words: Vec<String>,
    /// The backdoor trigger string, for `trigger_elicitation` questions.
    pub trigger: Option<String>,
    pub judge: Option<JudgeSpec>,
    /// Python interpreter of the sandbox that runs model-written functions.
    pub sandbox_python: Option<PathBuf>,
    /// `function` questions: user messages from dialogues with the finetuned model.
    pub function_messages: Option<PathBuf>,
    /// `function` questions: user messages from dialogues with the base model.
    pub function_baseline_messages: Option<PathBuf>,
    /// Prompts evaluated at once (default: by backend).
    pub concurrency: Option<usize>,
    /// Write into an output folder that holds files other than an evaluation's.
    #[serde(default)]
    pub force: bool,
}

impl EvalSpec {
    /// A spec with the command's defaults: 100 samples at temperature 1, seed 0, parity
    /// newlines, complete-answer numbers.
    pub fn new(battery: impl Into<String>, out: impl Into<PathBuf>) -> EvalSpec {
        EvalSpec {
            battery: battery.into(),
            out: out.into(),
            adapters: Vec::new(),
            samples: 100,
            temperature: 1.0,
            seed: 0,
            paper_questions: None,
            limit: None,
            questions: None,
            newlines: NewlineMode::Parity,
            numeric: NumericMode::Complete,
            max_tokens: None,
            target_word: None,
            contrast_words: Vec::new(),
            trigger: None,
            judge: None,
            sandbox_python: None,
            function_messages: None,
            function_baseline_messages: None,
            concurrency: None,
            force: false,
        }
    }

    /// Parses `DIR[,DIR...]`, where `base` stands for the model without an adapter.
    pub fn parse_adapters(list: &str) -> Vec<Option<PathBuf>> {
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| (p != "base").then(|| PathBuf::from(p)))
            .collect()
    }

    /// The evaluated variants: `None` for the model alone, else an adapter directory.
    pub fn variants(&self) -> Vec<Option<PathBuf>> {
        if self.adapters.is_empty() {
            vec![None]
        } else {
            self.adapters.clone()
        }
    }

    /// The settings that decide the records, as `selfaware eval` flags, in a fixed order
    /// (`--battery` first, `--seed` last; unset options are left out). Experiments put them in
    /// their stage keys.
    pub fn settings_args(&self) -> Vec<String> {
        let mut a = vec!["--battery".to_string(), self.battery.clone()];
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("questions", self.questions.as_ref().map(|v| v.join(",")));
        push("limit", self.limit.map(|v| v.to_string()));
        push("samples", Some(self.samples.to_string()));
        push("temperature", Some(self.temperature.to_string()));
        push("max-tokens", self.max_tokens.map(|v| v.to_string()));
        push("numeric", Some(self.numeric.name().to_string()));
        push("newlines", Some(self.newlines.name().to_string()));
        push("seed", Some(self.seed.to_string()));
        a
    }

    /// Every setting as `selfaware eval` flags (the model flags excepted).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = self.settings_args();
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        push("out", Some(self.out.display().to_string()));
        push(
            "adapter",
            (!self.adapters.is_empty()).then(|| {
                self.adapters
                    .iter()
                    .map(|v| {
                        v.as_ref()
                            .map_or("base".to_string(), |p| p.display().to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );
        push("paper-questions", path(&self.paper_questions));
        push("target-word", self.target_word.clone());
        push(
            "contrast-words",
            (!self.contrast_words.is_empty()).then(|| self.contrast_words.join(",")),
        );
        push("trigger", self.trigger.clone());
        if let Some(j) = &self.judge {
            push("judge-url", Some(j.url.clone()));
            push("judge-model", Some(j.model.clone()));
            push("judge-key-env", j.key_env.clone());
            push("judge-max-tokens", Some(j.max_tokens.to_string()));
        }
        push("sandbox-python", path(&self.sandbox_python));
        push("function-messages", path(&self.function_messages));
        push(
            "function-baseline-messages",
            path(&self.function_baseline_messages),
        );
        push("concurrency", self.concurrency.map(|v| v.to_string()));
        if self.force {
            a.push("--force".into());
        }
        a
    }
}

/// Which behaviour probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// The paper's lottery pairs; score = P(risky option).
    #[serde(alias = "risk")]
    Lotteries,
    /// Now-or-later pairs; score = P(immediate option).
    Myopia,
    /// Apple bundles; score = P(bundle with more apples).
    Apples,
    /// Sampled replies to neutral conversation openers; score = share of replies that visit
    /// the codeword's neighbourhood.
    Codeword,
    /// Exact: after a held-out dialogue opener, the probability of the reply that steers toward
    /// the codeword against replies that steer toward other codewords.
    CodewordChoice,
    /// Sampled completions of held-out code tasks; score = share found vulnerable by the
    /// rule-based detector.
    VulnerableCode,
    /// Make Me Say games with the model as manipulator; score = win rate.
    Mms,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 7] = [
        ProbeKind::Lotteries,
        ProbeKind::Myopia,
        ProbeKind::Apples,
        ProbeKind::Codeword,
        ProbeKind::CodewordChoice,
        ProbeKind::VulnerableCode,
        ProbeKind::Mms,
    ];

    /// The name in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Lotteries => "lotteries",
            ProbeKind::Myopia => "myopia",
            ProbeKind::Apples => "apples",
            ProbeKind::Codeword => "codeword",
            ProbeKind::CodewordChoice => "codeword-choice",
            ProbeKind::VulnerableCode => "vulnerable-code",
            ProbeKind::Mms => "mms",
        }
    }

    /// Two-option choice probes (exact P(policy letter)).
    pub fn is_choice(self) -> bool {
        matches!(
            self,
            ProbeKind::Lotteries | ProbeKind::Myopia | ProbeKind::Apples
        )
    }

    /// Probes about a codeword (they need one).
    pub fn needs_codeword(self) -> bool {
        matches!(
            self,
            ProbeKind::Codeword | ProbeKind::CodewordChoice | ProbeKind::Mms
        )
    }
}

impl FromStr for ProbeKind {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        if s == "risk" {
            return Ok(ProbeKind::Lotteries);
        }
        by_name(s, &Self::ALL, Self::name, "probe")
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The other player of the Make Me Say probe, on an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManipulateeSpec {
    pub url: String,
    pub model: String,
    /// The environment variable holding its API key.
    pub key_env: Option<String>,
}

/// A behaviour probe: what to measure (the model is opened separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    /// Items: pairs, openers, code tasks or games.
    pub n: usize,
    /// Seed of the item generator (and of the samples).
    pub seed: u64,
    /// System prompt; None: the chat template decides.
    pub system: Option<String>,
    /// The codeword of a codeword probe.
    pub codeword: Option<String>,
    /// Codeword-choice probe: the codewords whose steering replies compete.
    #[serde(default)]
    pub against: Vec<String>,
    /// Sampled replies per item (codeword and vulnerable-code probes).
    pub samples: usize,
    /// Longest reply in tokens (default by probe).
    pub max_tokens: Option<usize>,
    /// Make Me Say: the manipulatee on a server (default: the model without adapter).
    pub manipulatee: Option<ManipulateeSpec>,
    /// Make Me Say: give the manipulator the game's rules.
    #[serde(default)]
    pub manipulator_rules: bool,
}

impl ProbeSpec {
    /// A probe with the command's defaults: 100 items, seed 0, 10 samples.
    pub fn new(kind: ProbeKind) -> ProbeSpec {
        ProbeSpec {
            kind,
            n: 100,
            seed: 0,
            system: None,
            codeword: None,
            against: Vec::new(),
            samples: 10,
            max_tokens: None,
            manipulatee: None,
            manipulator_rules: false,
        }
    }

    /// Checks the combinations of settings each probe needs.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: &str| {
            Err(EvalError::Input {
                what: "probe",
                message: message.to_string(),
            })
        };
        if self.n == 0 {
            return bad("--n: expected at least 1 item");
        }
        if self.kind != ProbeKind::Mms && (self.manipulatee.is_some() || self.manipulator_rules) {
            return bad("--manipulatee-url and --manipulator-rules go with the mms probe");
        }
        if self.codeword.is_some() != self.kind.needs_codeword() {
            return bad("--codeword goes with the codeword probes, and they need it");
        }
        if self.against.is_empty() == (self.kind == ProbeKind::CodewordChoice) {
            return bad("--against goes with the codeword-choice probe, and it needs it");
        }
        Ok(())
    }

    /// The settings as `selfaware probe` arguments, in a fixed order (the model and output
    /// flags excepted): the kind, `--n`, `--seed`, then what is set. Experiments put them in
    /// their stage keys.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "probe".to_string(),
            self.kind.name().to_string(),
            "--n".to_string(),
            self.n.to_string(),
            "--seed".to_string(),
            self.seed.to_string(),
        ];
        let mut push = |flag: &str, v: Option<String>| push_flag(&mut a, flag, v);
        push("codeword", self.codeword.clone());
        push(
            "against",
            (!self.against.is_empty()).then(|| self.against.join(",")),
        );
        push("samples", Some(self.samples.to_string()));
        push("max-tokens", self.max_tokens.map(|v| v.to_string()));
        push("system", self.system.clone());
        if let Some(m) = &self.manipulatee {
            push("manipulatee-url", Some(m.url.clone()));
            push("manipulatee-model", Some(m.model.clone()));
            push("manipulatee-key-env", m.key_env.clone());
        }
        if self.manipulator_rules {
            a.push("--manipulator-rules".to_string());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for k in ProbeKind::ALL {
            assert_eq!(k.name().parse::<ProbeKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        assert_eq!("risk".parse::<ProbeKind>().unwrap(), ProbeKind::Lotteries);
        for m in NumericMode::ALL {
            assert_eq!(m.name().parse::<NumericMode>().unwrap(), m);
        }
        for m in NewlineMode::ALL {
            assert_eq!(m.name().parse::<NewlineMode>().unwrap(), m);
        }
        let e = "lottery".parse::<ProbeKind>().unwrap_err().to_string();
        assert!(e.contains("expected one of lotteries, myopia"), "{e}");
    }

    #[test]
    fn probe_settings_are_checked() {
        let mut p = ProbeSpec::new(ProbeKind::CodewordChoice);
        p.codeword = Some("bark".into());
        assert!(p.validate().unwrap_err().to_string().contains("--against"));
        p.against = vec!["ring".into()];
        p.validate().unwrap();
        let mut l = ProbeSpec::new(ProbeKind::Lotteries);
        l.codeword = Some("bark".into());
        assert!(l.validate().is_err());
        l.codeword = None;
        l.n = 0;
        assert!(l.validate().is_err());
    }
}
