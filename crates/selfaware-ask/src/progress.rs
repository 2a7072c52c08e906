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

/// A `progress(done, total)` callback (the form the activation and training libraries report
/// in) that drives `p`: started at the first call, one step (`label`) per unit done, finished
/// when `done` reaches `total`.
pub fn counter<'a>(
    p: &'a mut dyn Progress,
    what: &'static str,
    label: &'a str,
) -> impl FnMut(usize, usize) + 'a {
    let mut reported = 0usize;
    let mut started = false;
    move |done, total| {
        if !started {
            p.start(total, what);
            started = true;
        }
        while reported < done {
            reported += 1;
            p.step(label);
        }
        if done >= total {
            p.finish();
        }
    }
}

/// Progress nobody watches.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _total: usize, _what: &'static str) {}
    fn step(&mut self, _label: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);

    impl Progress for Log {
        fn start(&mut self, total: usize, what: &'static str) {
            self.0.push(format!("start {total} {what}"));
        }
        fn step(&mut self, label: &str) {
            self.0.push(format!("step {label}"));
        }
        fn finish(&mut self) {
            self.0.push("finish".into());
        }
    }

    #[test]
    fn a_counter_turns_done_and_total_into_steps() {
        let mut log = Log::default();
        {
            let mut c = counter(&mut log, "prompts", "captured");
            c(2, 3);
            c(3, 3);
        }
        assert_eq!(
            log.0,
            [
                "start 3 prompts",
                "step captured",
                "step captured",
                "step captured",
                "finish"
            ]
        );
    }
}
