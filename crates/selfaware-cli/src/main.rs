//! `selfaware`: behavioral self-awareness experiments on language models.
//!
//! This binary only parses arguments, resolves settings (flags, then environment, then
//! defaults) and calls the libraries; everything it prints comes from their return values.

mod cmd_bench;
mod cmd_model;
mod cmd_score;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "selfaware", version, about = "Behavioral self-awareness experiments on language models", long_about = None)]
struct Cli {
    /// The tool's home (models, caches). Default: $SELFAWARE_HOME, else ~/.cache/selfaware.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<std::path::PathBuf>,
    /// CPU threads for tensor work. Default: all cores.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install and inspect models.
    #[command(subcommand)]
    Model(cmd_model::ModelCommand),
    /// Ask a model one question and print its answer.
    Chat(cmd_score::ChatArgs),
    /// Exact probabilities of candidate answers or of a numeric range.
    Score(cmd_score::ScoreArgs),
    /// Measure selfaware on a workload (bench/ runs the peers and prints ratios).
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
}

fn main() {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // candle's CPU kernels read their thread count from rayon's variable.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = settings::Settings::resolve(cli.home).and_then(|s| match cli.command {
        Command::Model(c) => cmd_model::run(&s, c),
        Command::Chat(a) => cmd_score::chat(&s, a),
        Command::Score(a) => cmd_score::score(&s, a),
        Command::Bench(c) => cmd_bench::run(&s, c),
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
