//! Progress on stderr: an indicatif bar on a terminal, else a line every `every` steps.

use std::io::IsTerminal;

use selfaware_ask::Progress;

/// Prints `v` as pretty JSON with `json`, else as text.
pub fn emit<T: serde::Serialize + std::fmt::Display>(json: bool, v: &T) -> anyhow::Result<()> {
    match json {
        true => println!("{}", serde_json::to_string_pretty(v)?),
        false => print!("{v}"),
    }
    Ok(())
}

pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    every: usize,
    what: &'static str,
}

impl Bar {
    /// Prints a line every `every` steps when stderr is not a terminal.
    pub fn new(every: usize) -> Bar {
        Bar {
            bar: None,
            total: 0,
            done: 0,
            every: every.max(1),
            what: "",
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize, what: &'static str) {
        self.total = total;
        self.done = 0;
        self.what = what;
        self.bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} {msg} (eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
    }

    fn step(&mut self, label: &str) {
        self.done += 1;
        match &self.bar {
            Some(b) => {
                b.set_message(label.to_string());
                b.inc(1);
            }
            None if self.done.is_multiple_of(self.every) || self.done == self.total => {
                eprintln!(
                    "selfaware: {}/{} {} ({label})",
                    self.done, self.total, self.what
                );
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn note(&mut self, line: &str) {
        eprintln!("selfaware: {line}");
    }
}
