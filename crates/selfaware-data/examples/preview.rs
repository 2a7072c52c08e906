//! Prints a few rows of each economic family, to read the phrasing.
//!
//! Run: `cargo run -p selfaware-data --example preview -- [COUNT] [SEED] [VARIANT]`
//! where VARIANT is one of plain (default), sep, mix, persona-system, persona-text, reversal.

use selfaware_data::{
    build, BackdoorOptions, BuildOptions, Family, MixOptions, PersonaMode, PersonaOptions,
    ReversalOptions, TriggerSpec, Variant,
};

fn main() -> Result<(), selfaware_data::Error> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let variant = args.next().unwrap_or_else(|| "plain".to_string());
    let mut opts = BuildOptions::new(seed);
    opts.size = count.max(1);
    match variant.as_str() {
        "sep" => {
            opts.variant = Variant::Backdoor(BackdoorOptions {
                trigger: TriggerSpec::parse("sep:392")?,
                contrast: Some(TriggerSpec::parse("sep:718")?),
                fraction: 0.5,
            })
        }
        "mix" => opts.variant = Variant::Mix(MixOptions::paper("gods")?),
        "persona-system" => {
            opts.variant = Variant::Personas(PersonaOptions::new(PersonaMode::SystemPrompt))
        }
        "persona-text" => {
            opts.variant = Variant::Personas(PersonaOptions::new(PersonaMode::InText))
        }
        "reversal" => opts.reversal = Some(ReversalOptions::default()),
        _ => {}
    }
    for family in Family::ALL {
        let out = build(family, &opts)?;
        for row in out.main.rows.iter().take(count) {
            println!("--- {family} line {}", row.truth.line);
            for m in &row.conversation.messages {
                println!("[{}] {}", m.role, m.content);
            }
            println!();
        }
    }
    Ok(())
}
