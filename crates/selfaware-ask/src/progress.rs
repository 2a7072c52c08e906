//! Progress of long work, reported to whoever runs it (the binary draws a bar or prints lines;
//! this library never prints).

/// Receives progress of one piece of work.
pub trait Progress {
    /// Work of `total` steps called `what` (e.g. "prompts", "pairs") begins.
    fn start(&mut self, total: usize, what: &'static str);
    /// One step finished; `label` says which (a question id, a probe name).
    fn step(&mut self, label: &str);
    /// The work is done.
    fn finish(&mut self) {}
    /// A line worth showing (what a run will do, what it resumes).
    fn note(&mut self, line: &str) {
        let _ = line;
    }
}

/// Progress nobody watches.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _total: usize, _what: &'static str) {}
    fn step(&mut self, _label: &str) {}
}
