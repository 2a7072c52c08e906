//! Names shared by the command line, experiment files and the trainer.

use serde::{Deserialize, Serialize};

/// Shape of the learning-rate decay after warmup (linear, as transformers'
/// `get_linear_schedule_with_warmup`, cosine, or constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    #[default]
    Linear,
    Cosine,
    Constant,
}

impl Decay {
    pub const ALL: [Decay; 3] = [Decay::Linear, Decay::Cosine, Decay::Constant];

    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Decay::Linear => "linear",
            Decay::Cosine => "cosine",
            Decay::Constant => "constant",
        }
    }
}

crate::names_parse_and_display!(Decay);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for d in Decay::ALL {
            assert_eq!(d.name().parse::<Decay>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
        }
        let e = "step".parse::<Decay>().unwrap_err();
        assert_eq!(e, "\"step\": expected one of linear, cosine, constant");
    }
}
