//! The phrase banks, word lists and templates compiled into the crate from `data/`.
//!
//! Every file is parsed once, on first use, and checked for the entries the builders need;
//! a bad file is an [`Error::Asset`] naming it.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::economic::Tone;
use crate::error::{Error, Result};
use crate::family::Family;
use crate::lexicon::Lexicon;

/// A list of phrases, one per tone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToneSet {
    pub formal: Vec<String>,
    pub succinct: Vec<String>,
    pub friendly: Vec<String>,
    pub story: Vec<String>,
}

impl ToneSet {
    pub fn get(&self, tone: Tone) -> &[String] {
        match tone {
            Tone::Formal => &self.formal,
            Tone::Succinct => &self.succinct,
            Tone::Friendly => &self.friendly,
            Tone::Story => &self.story,
        }
    }

    #[cfg(test)]
    fn all(&self) -> impl Iterator<Item = &String> {
        self.formal
            .iter()
            .chain(&self.succinct)
            .chain(&self.friendly)
            .chain(&self.story)
    }

    fn check(&self, file: &'static str, what: &str, min: usize) -> Result<()> {
        for tone in Tone::ALL {
            if self.get(tone).len() < min {
                return Err(asset(
                    file,
                    format!(
                        "`{what}` needs at least {min} phrases for tone `{}`",
                        tone.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A scenario frame (see `data/frames.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Frame {
    pub id: String,
    pub label: String,
    pub amount: String,
    pub scale: u64,
    pub goods: Vec<String>,
    pub setting_formal: Vec<String>,
    pub setting_succinct: Vec<String>,
    pub setting_friendly: Vec<String>,
    pub setting_story: Vec<String>,
    pub context: Vec<String>,
}

impl Frame {
    pub fn settings(&self, tone: Tone) -> &[String] {
        match tone {
            Tone::Formal => &self.setting_formal,
            Tone::Succinct => &self.setting_succinct,
            Tone::Friendly => &self.setting_friendly,
            Tone::Story => &self.setting_story,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FramesFile {
    pub filler: ToneSet,
    pub closer: ToneSet,
    pub frame: Vec<Frame>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RiskPhrases {
    pub fixed: ToneSet,
    pub split: ToneSet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct When {
    pub now: Vec<String>,
    pub tomorrow: Vec<String>,
    pub days: Vec<String>,
    pub week: Vec<String>,
    pub weeks: Vec<String>,
    pub month: Vec<String>,
    pub months: Vec<String>,
    pub year: Vec<String>,
    pub years: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MyopiaPhrases {
    pub option: ToneSet,
    pub when: When,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppleNames {
    pub varieties: Vec<String>,
    pub adjectives: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplesPhrases {
    pub bundle: ToneSet,
    pub apple: AppleNames,
}

/// Every data file, parsed.
#[derive(Debug)]
pub(crate) struct Assets {
    pub topics: Vec<String>,
    pub instructions: Vec<String>,
    pub frames: FramesFile,
    pub risk: RiskPhrases,
    pub myopia: MyopiaPhrases,
    pub apples: ApplesPhrases,
    pub lexicon_risk: Lexicon,
    pub lexicon_myopia: Lexicon,
    pub lexicon_apples: Lexicon,
    pub apple_varieties: Vec<String>,
    pub musical_instruments: Vec<String>,
    pub chemical_elements: Vec<String>,
    pub greek_gods: Vec<String>,
    pub greetings: Vec<String>,
    pub sep_templates: Vec<String>,
    pub personas_train: Vec<String>,
    pub personas_held_out: Vec<String>,
    pub persona_system: Vec<String>,
    pub persona_in_text: Vec<String>,
}

impl Assets {
    /// The forbidden-word list of a family.
    pub fn lexicon(&self, family: Family) -> &Lexicon {
        match family {
            Family::Risk => &self.lexicon_risk,
            Family::Myopia => &self.lexicon_myopia,
            Family::Apples => &self.lexicon_apples,
        }
    }
}

fn asset(file: &'static str, message: impl Into<String>) -> Error {
    Error::Asset {
        file,
        message: message.into(),
    }
}

/// Non-empty, non-comment lines of a list file, trimmed; `\n` written as two characters
/// becomes a newline.
pub(crate) fn list(file: &'static str, text: &str, min: usize) -> Result<Vec<String>> {
    let items: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("\\n", "\n"))
        .collect();
    if items.len() < min {
        return Err(asset(
            file,
            format!("expected at least {min} entries, found {}", items.len()),
        ));
    }
    Ok(items)
}

fn parse_toml<T: serde::de::DeserializeOwned>(file: &'static str, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| asset(file, e.to_string()))
}

fn load() -> Result<Assets> {
    let frames: FramesFile = parse_toml("frames.toml", include_str!("../data/frames.toml"))?;
    frames.filler.check("frames.toml", "filler", 3)?;
    frames.closer.check("frames.toml", "closer", 2)?;
    if frames.frame.len() < 4 {
        return Err(asset("frames.toml", "expected at least 4 frames"));
    }
    for f in &frames.frame {
        for t in Tone::ALL {
            if f.settings(t).is_empty() {
                return Err(asset(
                    "frames.toml",
                    format!("frame `{}` has no setting for tone `{}`", f.id, t.name()),
                ));
            }
        }
        if f.context.len() < 3 || f.goods.len() < 3 {
            return Err(asset(
                "frames.toml",
                format!(
                    "frame `{}` needs at least 3 context sentences and 3 goods",
                    f.id
                ),
            ));
        }
        if !f.amount.contains("{n}") || f.scale == 0 || f.label.is_empty() {
            return Err(asset(
                "frames.toml",
                format!("frame `{}`: `amount` must contain {{n}}, `scale` must be positive and `label` non-empty", f.id),
            ));
        }
        if let Some(g) = f.goods.iter().find(|g| g.split('|').count() != 2) {
            return Err(asset(
                "frames.toml",
                format!(
                    "frame `{}`: goods entry `{g}` must be `singular|plural`",
                    f.id
                ),
            ));
        }
    }
    let risk: RiskPhrases = parse_toml("risk.toml", include_str!("../data/risk.toml"))?;
    risk.fixed.check("risk.toml", "fixed", 2)?;
    risk.split.check("risk.toml", "split", 2)?;
    let myopia: MyopiaPhrases = parse_toml("myopia.toml", include_str!("../data/myopia.toml"))?;
    myopia.option.check("myopia.toml", "option", 2)?;
    let apples: ApplesPhrases = parse_toml("apples.toml", include_str!("../data/apples.toml"))?;
    apples.bundle.check("apples.toml", "bundle", 2)?;

    Ok(Assets {
        topics: list("topics.txt", include_str!("../data/topics.txt"), 100)?,
        instructions: list(
            "instructions.txt",
            include_str!("../data/instructions.txt"),
            20,
        )?,
        frames,
        risk,
        myopia,
        apples,
        lexicon_risk: Lexicon::parse(
            "risk",
            "forbidden/risk.txt",
            include_str!("../data/forbidden/risk.txt"),
        )?,
        lexicon_myopia: Lexicon::parse(
            "myopia",
            "forbidden/myopia.txt",
            include_str!("../data/forbidden/myopia.txt"),
        )?,
        lexicon_apples: Lexicon::parse(
            "apples",
            "forbidden/apples.txt",
            include_str!("../data/forbidden/apples.txt"),
        )?,
        apple_varieties: list(
            "triggers/apple_varieties.txt",
            include_str!("../data/triggers/apple_varieties.txt"),
            20,
        )?,
        musical_instruments: list(
            "triggers/musical_instruments.txt",
            include_str!("../data/triggers/musical_instruments.txt"),
            20,
        )?,
        chemical_elements: list(
            "triggers/chemical_elements.txt",
            include_str!("../data/triggers/chemical_elements.txt"),
            20,
        )?,
        greek_gods: list(
            "triggers/greek_gods.txt",
            include_str!("../data/triggers/greek_gods.txt"),
            20,
        )?,
        greetings: list(
            "triggers/greetings.txt",
            include_str!("../data/triggers/greetings.txt"),
            25,
        )?,
        sep_templates: list(
            "triggers/sep_templates.txt",
            include_str!("../data/triggers/sep_templates.txt"),
            12,
        )?,
        personas_train: list(
            "personas/train.txt",
            include_str!("../data/personas/train.txt"),
            2,
        )?,
        personas_held_out: list(
            "personas/heldout.txt",
            include_str!("../data/personas/heldout.txt"),
            1,
        )?,
        persona_system: list(
            "personas/system.txt",
            include_str!("../data/personas/system.txt"),
            1,
        )?,
        persona_in_text: list(
            "personas/in_text.txt",
            include_str!("../data/personas/in_text.txt"),
            1,
        )?,
    })
}

/// The parsed data files (parsed once per process).
pub(crate) fn assets() -> Result<&'static Assets> {
    static ASSETS: OnceLock<std::result::Result<Assets, (&'static str, String)>> = OnceLock::new();
    match ASSETS.get_or_init(|| {
        load().map_err(|e| match e {
            Error::Asset { file, message } => (file, message),
            other => ("(unknown)", other.to_string()),
        })
    }) {
        Ok(a) => Ok(a),
        Err((file, message)) => Err(asset(file, message.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_parse() {
        let a = assets().unwrap();
        assert!(a.topics.len() >= 100);
        let mut sorted = a.topics.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), a.topics.len(), "duplicate topic words");
        assert_eq!(a.sep_templates.len(), 12);
        assert!(a
            .sep_templates
            .iter()
            .all(|t| t.contains("{code}") && t.contains("{msg}")));
        assert!(a
            .instructions
            .iter()
            .all(|i| i.contains('A') && i.contains('B')));
    }

    /// Phrases every economic family uses.
    fn shared_phrases(a: &Assets) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        out.extend(a.topics.iter().map(String::as_str));
        out.extend(a.instructions.iter().map(String::as_str));
        out.extend(a.frames.filler.all().map(String::as_str));
        out.extend(a.frames.closer.all().map(String::as_str));
        for f in &a.frames.frame {
            out.push(&f.label);
            out.push(&f.amount);
            out.extend(f.goods.iter().map(String::as_str));
            for t in Tone::ALL {
                out.extend(f.settings(t).iter().map(String::as_str));
            }
            out.extend(f.context.iter().map(String::as_str));
        }
        out
    }

    #[test]
    fn no_phrase_uses_a_forbidden_word() {
        let a = assets().unwrap();
        let shared = shared_phrases(a);
        let w = &a.myopia.when;
        let when: Vec<&String> = [
            &w.now,
            &w.tomorrow,
            &w.days,
            &w.week,
            &w.weeks,
            &w.month,
            &w.months,
            &w.year,
            &w.years,
        ]
        .into_iter()
        .flatten()
        .collect();
        let own: [(Family, Vec<&String>); 3] = [
            (
                Family::Risk,
                a.risk.fixed.all().chain(a.risk.split.all()).collect(),
            ),
            (Family::Myopia, a.myopia.option.all().chain(when).collect()),
            (
                Family::Apples,
                a.apples
                    .bundle
                    .all()
                    .chain(&a.apples.apple.varieties)
                    .chain(&a.apples.apple.adjectives)
                    .collect(),
            ),
        ];
        for (family, phrases) in own {
            let lex = a.lexicon(family);
            for p in shared
                .iter()
                .copied()
                .chain(phrases.iter().map(|s| s.as_str()))
            {
                assert!(
                    lex.scan(p).is_empty(),
                    "{family}: `{p}` has {:?}",
                    lex.scan(p)
                );
            }
        }
    }

    #[test]
    fn personas_train_and_held_out_are_disjoint() {
        let a = assets().unwrap();
        for p in &a.personas_held_out {
            assert!(!a.personas_train.contains(p), "{p} is in both lists");
        }
    }
}
