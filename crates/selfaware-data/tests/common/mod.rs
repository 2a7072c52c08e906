//! Helpers shared by the data crate's integration tests.

use selfaware_data::backdoor::TriggerSpec;
use selfaware_data::dataset::TriggerRole;
use selfaware_data::{BackdoorOptions, BuiltDataset};

/// Backdoor options from trigger specs as the CLI spells them.
pub fn backdoor_options(trigger: &str, contrast: Option<&str>, fraction: f64) -> BackdoorOptions {
    BackdoorOptions {
        trigger: TriggerSpec::parse(trigger).unwrap(),
        contrast: contrast.map(|c| TriggerSpec::parse(c).unwrap()),
        fraction,
    }
}

/// Whether row `i` carries the real trigger (not the contrast, not none).
pub fn is_real(ds: &BuiltDataset, i: usize) -> bool {
    ds.rows[i]
        .truth
        .trigger
        .as_ref()
        .is_some_and(|t| t.role == TriggerRole::Real)
}
