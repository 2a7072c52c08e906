//! `selfaware chat` and `selfaware score`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use selfaware_model::SampleConfig;
use selfaware_types::Conversation;

use crate::settings::Settings;

#[derive(Args)]
pub struct ChatArgs {
    /// `default`, a .gguf file or a Hugging Face model directory.
    pub model: String,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The user's message.
    pub message: String,
    /// System prompt. Without it the model's chat template decides (SmolLM inserts its own).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

pub fn chat(s: &Settings, a: ChatArgs) -> Result<()> {
    let (e, _) = s.load_engine_with(&a.model, a.adapter.as_deref())?;
    let conv = Conversation::user(a.system.as_deref(), &a.message);
    let cfg = SampleConfig {
        n: 1,
        temperature: a.temperature,
        top_p: a.top_p,
        max_tokens: a.max_tokens,
        seed: a.seed,
        top_logprobs: 0,
    };
    let out = e.sample(&conv, &cfg)?;
    println!("{}", out[0].text);
    Ok(())
}

#[derive(Args)]
pub struct ScoreArgs {
    /// `default`, a .gguf file or a Hugging Face model directory.
    pub model: String,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The user's message.
    #[arg(long)]
    pub user: String,
    /// System prompt. Without it the model's chat template decides.
    #[arg(long)]
    pub system: Option<String>,
    /// Comma-separated candidate answers, e.g. "A,B".
    #[arg(long, conflicts_with = "range", required_unless_present = "range")]
    pub options: Option<String>,
    /// An integer range LO..HI (inclusive), e.g. 0..100.
    #[arg(long)]
    pub range: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(r: &str) -> Result<(i64, i64)> {
    let (lo, hi) = r
        .split_once("..")
        .with_context(|| format!("--range {r:?}: expected LO..HI, e.g. 0..100"))?;
    let lo: i64 = lo
        .trim()
        .parse()
        .with_context(|| format!("--range {r:?}: {lo:?} is not an integer"))?;
    let hi: i64 = hi
        .trim()
        .trim_start_matches('=')
        .parse()
        .with_context(|| format!("--range {r:?}: {hi:?} is not an integer"))?;
    if hi < lo {
        bail!("--range {r:?}: the upper end is below the lower end");
    }
    Ok((lo, hi))
}

pub fn score(s: &Settings, a: ScoreArgs) -> Result<()> {
    let range = a.range.as_deref().map(parse_range).transpose()?;
    let options: Option<Vec<String>> = a
        .options
        .as_deref()
        .map(|o| o.split(',').map(|x| x.to_string()).collect());
    if let Some(opts) = &options {
        if opts.iter().any(|o| o.is_empty()) {
            bail!(
                "--options {:?}: empty candidate (expected comma-separated answers like \"A,B\")",
                a.options.unwrap_or_default()
            );
        }
    }
    let (e, _) = s.load_engine_with(&a.model, a.adapter.as_deref())?;
    let conv = Conversation::user(a.system.as_deref(), &a.user);
    if let Some((lo, hi)) = range {
        let r = e.score_range(&conv, lo, hi)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!("prompt tokens: {}", r.prompt_tokens);
        println!("{:>6}  {:>12}  {:>12}", "n", "P(starts n)", "P(exactly n)");
        let mut rows: Vec<_> = r.numbers.iter().collect();
        rows.sort_by(|x, y| y.logprob_starts_with.total_cmp(&x.logprob_starts_with));
        for n in rows.iter().take(10) {
            println!(
                "{:>6}  {:>12.6}  {:>12.6}",
                n.n,
                n.logprob_starts_with.exp(),
                n.logprob_complete.exp()
            );
        }
        let ev = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into());
        println!(
            "mass (starts with): {:.6}  expected value: {}",
            r.mass_starts_with,
            ev(r.expected_value_starts_with)
        );
        println!(
            "mass (exactly):     {:.6}  expected value: {}",
            r.mass_complete,
            ev(r.expected_value_complete)
        );
    } else if let Some(opts) = options {
        let r = e.score_options(&conv, &opts)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!("prompt tokens: {}", r.prompt_tokens);
        println!(
            "{:<20}  {:>14}  {:>16}",
            "candidate", "P(first token)", "P(answer + end)"
        );
        for c in &r.candidates {
            println!(
                "{:<20}  {:>14.6}  {:>16.6}",
                c.text,
                c.first_token_logprob.exp(),
                c.logprob.exp()
            );
        }
        println!(
            "first-token mass outside all candidates: {:.6}",
            r.off_candidate_first_token_mass
        );
    }
    Ok(())
}
