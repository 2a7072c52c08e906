//! `selfaware train`, `selfaware data inspect` and `selfaware adapter merge`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use selfaware_model::HookPoint;
use selfaware_train::manifest::{check_out_dir, write_outputs, BaseModel, OutPolicy};
use selfaware_train::trainer::Event;
use selfaware_train::{data, Decay, TrainConfig, TrainMethod, Trainer};

use crate::settings::{environment, Settings};

#[derive(Args)]
pub struct TrainArgs {
    /// Base model: `default`, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Training data: OpenAI chat-format JSONL (`{"messages": [...]}` per line).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output directory: PEFT adapter (or steer.safetensors), training_manifest.json, checkpoints/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// What to train: lora (an adapter) or steer (one vector added at --point).
    #[arg(long, default_value = "lora", value_parser = crate::cmd_eval::parse_with::<TrainMethod>)]
    pub method: TrainMethod,
    /// Where --method steer adds its vector, e.g. blocks.12.hook_resid_post.
    #[arg(long, value_parser = crate::cmd_eval::parse_with::<HookPoint>)]
    pub point: Option<HookPoint>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Comma-separated projections to adapt.
    #[arg(
        long,
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        value_delimiter = ','
    )]
    pub target_modules: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Learning-rate decay after warmup: linear, cosine or constant.
    #[arg(long, default_value = "linear", value_parser = crate::cmd_eval::parse_with::<Decay>)]
    pub decay: Decay,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Clip the global gradient norm (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Checkpoint every N optimizer steps (0: only at the end of each epoch).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Longest example in tokens (default: the model's context length).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Print token counts and an estimated time (from one timed step), without training.
    /// Checks everything a real run would, the output folder included.
    #[arg(long)]
    pub dry_run: bool,
    /// Write into --out even when it holds trained weights (replaced), checkpoints of another run
    /// (started over) or files selfaware did not write (left beside the adapter). Without it,
    /// such a folder is an error naming the file.
    #[arg(long)]
    pub force: bool,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            method: self.method,
            point: self.point,
            seed: self.seed,
            epochs: self.epochs,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            adam_eps: 1e-8,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            decay: self.decay,
            max_grad_norm: (self.max_grad_norm > 0.0).then_some(self.max_grad_norm),
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
            checkpoint_every: self.checkpoint_every,
        }
    }
}

pub fn train(s: &Settings, a: TrainArgs) -> Result<()> {
    let cfg = a.config();
    cfg.validate()?;
    check_out_dir(
        &a.out,
        OutPolicy {
            resume: a.resume,
            force: a.force,
        },
    )?;
    let e = s.load_engine(&a.model)?;
    let ds = data::load_for(&e, &a.data, a.max_length)?;
    let mut trainer = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, cfg)?;
    let total = trainer.total_steps();
    eprintln!(
        "selfaware: {} examples, {} tokens ({} trained); {} epochs → {} optimizer steps",
        ds.examples.len(),
        ds.n_tokens(),
        ds.n_trained(),
        trainer.cfg.epochs,
        total
    );
    if a.dry_run {
        println!("{}", trainer.dry_run()?);
        return Ok(());
    }
    if a.resume {
        match trainer.resume(&a.out)? {
            Some(p) => eprintln!("selfaware: resuming from {}", p.display()),
            None => eprintln!(
                "selfaware: no checkpoint in {}; starting from the beginning",
                a.out.display()
            ),
        }
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} step {pos}/{len} epoch {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .context("progress bar template")?,
    );
    bar.set_position(trainer.step as u64);
    let started = Instant::now();
    let mut tokens = 0usize;
    trainer.run(Some(&a.out), &mut |ev| match ev {
        Event::Step { log, .. } => {
            tokens += log.tokens;
            let rate = tokens as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "{} loss {:.4} lr {:.2e} {:.0} tok/s",
                log.epoch + 1,
                log.loss,
                log.lr,
                rate
            ));
            bar.set_position(log.step as u64);
        }
        Event::Checkpoint { path } => {
            bar.println(format!("checkpoint {}", path.display()));
        }
    })?;
    bar.finish();
    let m = write_outputs(
        &trainer,
        &ds,
        BaseModel {
            reference: a.model.clone(),
            sha256: e.info.sha256.clone(),
        },
        environment().git_revision.map(str::to_string),
        &a.out,
    )?;
    println!("{}", m.summary(&a.out));
    Ok(())
}

#[derive(Args)]
pub struct InspectArgs {
    /// The JSONL training file.
    pub file: PathBuf,
    /// Model whose tokenizer and chat template encode the data.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Print each example's tokens, with trained tokens in [brackets].
    #[arg(long)]
    pub show_mask: bool,
    #[arg(long)]
    pub max_length: Option<usize>,
}

pub fn inspect(s: &Settings, a: InspectArgs) -> Result<()> {
    let e = s.load_engine(&a.model)?;
    let ds = data::load_for(&e, &a.file, a.max_length)?;
    println!("{}", ds.summary());
    if a.show_mask {
        for ex in &ds.examples {
            let line = ex.render_mask(&e.chat.tokenizer)?;
            println!(
                "--- line {} ({} tokens, {} trained)\n{line}",
                ex.line,
                ex.len(),
                ex.n_trained()
            );
        }
    }
    Ok(())
}
