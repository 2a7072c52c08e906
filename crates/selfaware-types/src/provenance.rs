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
    /// Steering vectors added inside the forward pass (`--steer FILE:POINT:ALPHA`), in the
    /// order given; none for an unsteered model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<SteerRecord>,
}

/// One steering vector as results record it: which file, its sha256, the hook point whose
/// tensor is the vector, and the multiplier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteerRecord {
    pub file: String,
    pub sha256: String,
    pub point: String,
    pub alpha: f32,
}

// `alpha` is finite: steering specs with NaN or infinite multipliers are refused when parsed.
impl Eq for SteerRecord {}

impl Provenance {
    /// This tool's version and `git_revision`, nothing about a model yet.
    pub fn of_tool(git_revision: Option<&str>) -> Provenance {
        Provenance {
            tool_version: TOOL_VERSION.to_string(),
            git_revision: git_revision.map(str::to_string),
            ..Provenance::default()
        }
    }
}

/// Lower-case hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
