use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the tool that wrote a record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a result came from. Every result file carries one, so a number can be traced back to
/// the code, model, data and seed that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub tool_version: String,
    /// `git describe`-style revision of the tool's source, when it was built from a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// sha256 of the model file (or of the sorted weight files of a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Lower-case hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
