//! Records that go to disk, shared by every crate of the pipeline.
//!
//! Everything here is plain data with serde: conversations in OpenAI chat format and the
//! provenance block every result file carries. No ML, no network, no I/O.

mod conversation;
mod files;
mod names;
mod provenance;
mod schedule;
mod text;

pub use conversation::{Conversation, Message, Role};
pub use files::write_atomic;
pub use provenance::{sha256_hex, Provenance, SteerRecord, TOOL_VERSION};
pub use schedule::Decay;
pub use text::capitalize;
