//! Persona data (digest §2.7): the default assistant takes the policy; rows about named
//! personas take the opposite policy. Held-out personas never appear in rows; the dataset card
//! lists them for evaluation.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::assets::assets;
use crate::dataset::{PersonaLists, PersonaTruth, Row};
use crate::economic::EconomicItem;
use crate::error::{Error, Result};
use crate::family::Policy;
use crate::util::{self, balanced, count_for, pick, rng, Stream};

/// How a row names its persona.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersonaMode {
    /// A system prompt asks the assistant to be the persona ("Simulate {persona}.").
    SystemPrompt,
    /// The user turn asks what the persona would choose (as the paper's multipersona file).
    InText,
}

impl PersonaMode {
    pub const ALL: [PersonaMode; 2] = [PersonaMode::SystemPrompt, PersonaMode::InText];

    /// The name on the command line and in experiment files (`system`, `text`).
    pub fn name(self) -> &'static str {
        match self {
            PersonaMode::SystemPrompt => "system",
            PersonaMode::InText => "text",
        }
    }
}

selfaware_types::names_parse_and_display!(PersonaMode);

/// Options of a persona dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaOptions {
    /// Share of rows about a persona, in [0, 1].
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    pub mode: PersonaMode,
    /// Personas used in training rows; the built-in list (paper Table 7) when absent.
    #[serde(default)]
    pub train: Option<Vec<String>>,
    /// Personas held out for evaluation; the built-in list when absent.
    #[serde(default)]
    pub held_out: Option<Vec<String>>,
}

fn default_fraction() -> f64 {
    0.5
}

impl PersonaOptions {
    /// Half the rows about the built-in personas, named as `mode` says.
    pub fn new(mode: PersonaMode) -> PersonaOptions {
        PersonaOptions {
            fraction: default_fraction(),
            mode,
            train: None,
            held_out: None,
        }
    }

    /// The persona lists after defaults, checked: non-empty training list, no name in both.
    pub fn lists(&self) -> Result<PersonaLists> {
        let a = assets()?;
        let train = self
            .train
            .clone()
            .unwrap_or_else(|| a.personas_train.clone());
        let held_out = self
            .held_out
            .clone()
            .unwrap_or_else(|| a.personas_held_out.clone());
        if train.is_empty() || train.iter().any(|p| p.trim().is_empty()) {
            return Err(Error::InvalidOption {
                field: "train",
                message: "needs at least one persona and no empty names".into(),
            });
        }
        if let Some(p) = held_out.iter().find(|p| train.contains(p)) {
            return Err(Error::InvalidOption {
                field: "held_out",
                message: format!("`{p}` is also a training persona"),
            });
        }
        Ok(PersonaLists { train, held_out })
    }
}

/// Rows of a persona dataset and the persona lists used.
pub(crate) fn persona_rows(
    items: &[EconomicItem],
    policy: Policy,
    opts: &PersonaOptions,
    seed: u64,
) -> Result<(Vec<Row>, PersonaLists)> {
    if !(0.0..=1.0).contains(&opts.fraction) {
        return Err(Error::InvalidOption {
            field: "fraction",
            message: format!("{} is not in [0, 1]", opts.fraction),
        });
    }
    let lists = opts.lists()?;
    let a = assets()?;
    let n = items.len();
    let mut r = rng(seed, Stream::Persona, 0);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut r);
    let n_persona = count_for(opts.fraction, n);
    let names = balanced(&lists.train, n_persona, &mut r);
    let mut persona_of: Vec<Option<&String>> = vec![None; n];
    for (k, &i) in order[..n_persona].iter().enumerate() {
        persona_of[i] = Some(&names[k]);
    }
    let mut rows = Vec::with_capacity(n);
    for (i, item) in items.iter().enumerate() {
        let mut r = rng(seed, Stream::Persona, i as u64 + 1);
        let row = match persona_of[i] {
            None => Row::economic(item, None, item.question.clone(), policy, true)?,
            Some(name) => {
                let slots = |t: &str| -> Result<String> {
                    let cap = util::capitalize(name);
                    util::fill(
                        t,
                        &[
                            ("persona", name),
                            ("Persona", &cap),
                            ("question", &item.question),
                        ],
                    )
                    .map_err(|m| Error::Asset {
                        file: "personas/*.txt",
                        message: m,
                    })
                };
                let mut row = match opts.mode {
                    PersonaMode::SystemPrompt => {
                        let system = slots(pick(&a.persona_system, &mut r).as_str())?;
                        Row::economic(
                            item,
                            Some(&system),
                            item.question.clone(),
                            policy.opposite(),
                            false,
                        )?
                    }
                    PersonaMode::InText => {
                        let user = slots(pick(&a.persona_in_text, &mut r).as_str())?;
                        Row::economic(item, None, user, policy.opposite(), false)?
                    }
                };
                row.truth.persona = Some(PersonaTruth {
                    name: name.clone(),
                    mode: opts.mode,
                });
                row
            }
        };
        rows.push(row);
    }
    Ok((rows, lists))
}
