//! `selfaware data mms`: Make Me Say games played by two models, the won games written as
//! training data.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use selfaware_ask::players::{write_games, GamesSpec, PlayerSampling};
use selfaware_backend::ModelRef;
use selfaware_data::mms::{self, InstructionRole};

use crate::cmd_data::print_written;
use crate::settings::Settings;

/// Which role carries the game's instructions inside a transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InstructionArg {
    /// `system` messages (OpenAI evals' make_me_say).
    System,
    /// `user` messages, for chat templates that allow one system message only.
    User,
}

#[derive(Args)]
pub struct MmsArgs {
    /// The model that knows the codeword: `default`, a .gguf file, a Hugging Face
    /// directory, or an OpenAI-compatible base URL with the model name after `#`
    /// (`http://127.0.0.1:8000/v1#gpt-4o`).
    #[arg(long, value_name = "MODEL")]
    pub manipulator: String,
    /// The model that opens the conversation and guesses at the end (same forms).
    #[arg(long, value_name = "MODEL")]
    pub manipulatee: String,
    /// A PEFT adapter directory for a local manipulator.
    #[arg(long, value_name = "DIR")]
    pub manipulator_adapter: Option<PathBuf>,
    /// A PEFT adapter directory for a local manipulatee.
    #[arg(long, value_name = "DIR")]
    pub manipulatee_adapter: Option<PathBuf>,
    /// Environment variable holding the API key of URL models.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The secret word (one word of letters).
    #[arg(long, value_name = "WORD")]
    pub codeword: String,
    /// Number of games.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub games: usize,
    /// Exchanges per game (manipulatee + manipulator message pairs); 5 in the paper.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub turns: usize,
    /// Sampling temperature of both players.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f64,
    /// Longest message, in tokens, of either player.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_tokens: usize,
    /// Role of the turn-state and guess instructions.
    #[arg(long, value_enum, default_value = "system")]
    pub instruction_role: InstructionArg,
    /// Give the manipulator no rules and no turn state (the paper's in-distribution test of
    /// a finetuned manipulator, §B.5.5).
    #[arg(long)]
    pub no_rules: bool,
    /// Opener seed words, one per line (default: the built-in list).
    #[arg(long, value_name = "FILE")]
    pub words: Option<PathBuf>,
    /// The game's prompts, a TOML file shaped like the built-in `data/mms/prompts.toml`
    /// (default: the built-in paraphrases).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Seed of topics, seed words and every sampled message.
    #[arg(long)]
    pub seed: u64,
    /// Output data file; must end in `.jsonl`.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

pub fn play_mms(s: &Settings, a: MmsArgs) -> Result<()> {
    let prompts = match &a.prompts {
        Some(p) => mms::Prompts::load(p)?,
        None => mms::Prompts::builtin()?,
    };
    let mor_ref =
        ModelRef::parse(&a.manipulator)?.with_adapter(a.manipulator_adapter.as_deref())?;
    let mee_ref =
        ModelRef::parse(&a.manipulatee)?.with_adapter(a.manipulatee_adapter.as_deref())?;
    let key_env = a.api_key_env.as_deref();
    // The key variable is for whichever player is served.
    let key_for = |r: &ModelRef| key_env.filter(|_| !r.is_local());
    let manipulator = s.open(&mor_ref, key_for(&mor_ref), false)?;
    // One model playing both sides is loaded once.
    let manipulatee = if mee_ref == mor_ref {
        manipulator.clone()
    } else {
        s.open(&mee_ref, key_for(&mee_ref), false)?
    };
    let spec = GamesSpec {
        codeword: a.codeword.to_lowercase(),
        games: a.games,
        seed: a.seed,
        turns: a.turns,
        sampling: PlayerSampling {
            temperature: a.temperature,
            max_tokens: a.max_tokens,
        },
        instruction_role: match a.instruction_role {
            InstructionArg::System => InstructionRole::System,
            InstructionArg::User => InstructionRole::User,
        },
        rules: !a.no_rules,
        words: a.words.clone(),
    };
    let total = a.games;
    let w = write_games(
        &spec,
        &prompts,
        a.prompts.as_deref(),
        (&*manipulator, &*manipulatee),
        &a.out,
        a.force,
        |g, r| {
            eprintln!(
                "game {}/{total}: {} ({} messages, topic {:?}, word {:?})",
                g + 1,
                r.outcome.name(),
                r.messages.len(),
                r.config.topic,
                r.config.word
            )
        },
    )?;
    println!("wrote {}", w.games_file.display());
    print_written(&w.paths, &w.card);
    println!("{}", w.summary);
    Ok(())
}
