//! Prints a few generated questions of each economic family, to read the phrasing.
//!
//! Run: `cargo run -p selfaware-data --example preview -- [COUNT] [SEED]`

use selfaware_data::economic::{generate, TemplateWriter};
use selfaware_data::{Family, Policy};

fn main() -> Result<(), selfaware_data::Error> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    for family in Family::ALL {
        let mut writer = TemplateWriter::new(seed);
        for item in generate(family, count, seed, &mut writer)? {
            let policy: Policy = family.positive();
            println!(
                "--- {family} #{} ({:?}, {:?}) {policy}: {}\n{}\n",
                item.spec.index,
                item.spec.style.tone,
                item.spec.style.length,
                item.spec.choice.answer(policy),
                item.question
            );
        }
    }
    Ok(())
}
