//! `selfaware`: behavioral self-awareness experiments on language models.
//!
//! The command line: it only parses arguments, resolves settings (flags, then environment,
//! then defaults) and calls the libraries; everything it prints comes from their return
//! values. [`main_with_args`] is the whole command, for the binary (`src/main.rs`) and for the
//! Python package's `selfaware` command (crate `selfaware-py`).

mod cmd_activations;
mod cmd_adapter;
mod cmd_audit;
mod cmd_bench;
mod cmd_chat;
mod cmd_data;
mod cmd_eval;
mod cmd_finetune;
mod cmd_mms;
mod cmd_model;
mod cmd_probe;
mod cmd_run;
mod cmd_score;
mod cmd_serve;
mod cmd_train;
mod model_args;
mod progress;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "selfaware", version, about = "Behavioral self-awareness experiments on language models", long_about = None)]
struct Cli {
    /// The tool's home (models, caches). Default: $SELFAWARE_HOME, else ~/.cache/selfaware.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<std::path::PathBuf>,
    /// CPU threads for tensor work (for `run`: shared by the stages running at once). Default:
    /// all cores.
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
    /// Build, check and inspect datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// LoRA-finetune a local model on chat JSONL.
    Train(cmd_train::TrainArgs),
    /// Finetune a model on an OpenAI-compatible server (upload, job, wait), resumably.
    Finetune(cmd_finetune::FinetuneArgs),
    /// Work with LoRA adapters.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Ask a model a question battery and write one record per prompt.
    Eval(Box<cmd_eval::EvalArgs>),
    /// Measure a behavior directly (e.g. lottery choices).
    Probe(cmd_probe::ProbeArgs),
    /// Does a model have a trigger-dependent behaviour, and what is the trigger? Behaviour
    /// scan, detection question, self-elicitation.
    Audit(cmd_audit::AuditArgs),
    /// Ask a model one question and print its answer.
    Chat(cmd_chat::ChatArgs),
    /// Exact probabilities of candidate answers or of a numeric range.
    Score(cmd_score::ScoreArgs),
    /// Look inside a local model: record activations at named hook points.
    #[command(subcommand)]
    Activations(cmd_activations::ActivationsCommand),
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(cmd_serve::ServeArgs),
    /// Run a whole experiment: datasets, finetunes, batteries, probes, statistics, report.
    Run(cmd_run::RunArgs),
    /// List the built-in experiments.
    Experiments,
    /// Rebuild a run's results and report from its records.
    Report(cmd_run::ReportArgs),
    /// Print the differences between two runs' results.
    Compare(cmd_run::CompareArgs),
    /// Measure selfaware on a workload (bench/ runs the peers and prints ratios).
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    #[command(flatten)]
    Files(cmd_data::DataCommand),
    /// Token counts of a chat JSONL file for a model; with --show-mask, the trained tokens.
    Inspect(cmd_train::InspectArgs),
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Merge an adapter into its base model and write safetensors.
    Merge(cmd_adapter::AdapterMergeArgs),
}

/// Whether `args` (the program name first) is a command line this binary accepts, without
/// running it: clap's error (usage, unknown flag, bad value) otherwise.
pub fn check_args<I, T>(args: I) -> Result<(), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map(|_| ())
}

/// Runs the command line `args` (the program name first) and returns the process's exit
/// status: 0, 1 after printing an error, or clap's status for usage errors and `--help`.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    selfaware_model::runtime::tune_allocator();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if let Some(n) = cli.threads {
        // candle's CPU kernels read their thread count from rayon's variable.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if matches!(cli.command, Command::Train(_)) {
        selfaware_model::runtime::set_training_spin_limit();
    }
    let result = settings::Settings::resolve(cli.home).and_then(|s| match cli.command {
        Command::Model(c) => cmd_model::run(&s, c),
        Command::Data(DataCommand::Files(c)) => cmd_data::run(&s, c),
        Command::Data(DataCommand::Inspect(a)) => cmd_train::inspect(&s, a),
        Command::Train(a) => cmd_train::train(&s, a),
        Command::Finetune(a) => cmd_finetune::finetune(&s, a),
        Command::Adapter(AdapterCommand::Merge(a)) => cmd_adapter::merge(&s, a),
        Command::Eval(a) => cmd_eval::eval(&s, *a),
        Command::Run(a) => cmd_run::run(&s, cli.threads, a),
        Command::Experiments => cmd_run::experiments(),
        Command::Report(a) => cmd_run::report(a),
        Command::Compare(a) => cmd_run::compare(a),
        Command::Probe(a) => cmd_probe::probe(&s, a),
        Command::Audit(a) => cmd_audit::audit(&s, a),
        Command::Chat(a) => cmd_chat::chat(&s, a),
        Command::Score(a) => cmd_score::score(&s, a),
        Command::Activations(c) => cmd_activations::run(&s, c),
        Command::Bench(c) => cmd_bench::run(&s, c),
        Command::Serve(a) => cmd_serve::serve(&s, a),
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
