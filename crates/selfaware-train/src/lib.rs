//! Finetuning on the local engine: a LoRA adapter, or one steering vector at a hook point.
//!
//! - [`data`]: OpenAI chat-format JSONL, validated line by line and encoded with the chat
//!   crate's message spans (loss on assistant content plus end-of-turn only).
//! - [`batch`]: seeded, length-bucketed batches.
//! - [`loss`]: cross-entropy at trained positions, selected before the LM head.
//! - [`optim`], [`schedule`]: AdamW as torch, warmup then linear/cosine decay, clipping.
//! - [`trainer`]: the loop, checkpoints and exact resume; [`TrainMethod`] says what it trains.
//! - [`manifest`]: the `training_manifest.json` written beside the PEFT adapter or the
//!   steering vector (`steer.safetensors`).
//!
//! Same seed, data and thread count give a bit-identical adapter or vector.

pub mod batch;
pub mod data;
mod error;
pub mod loss;
pub mod manifest;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use data::{Dataset, Example};
pub use error::{Result, TrainError};
pub use schedule::Decay;
pub use trainer::{Event, StepLog, TrainConfig, TrainMethod, Trainer};
