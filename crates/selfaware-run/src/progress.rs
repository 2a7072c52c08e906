//! What a run tells its user while it goes: how many stages may run at once, and an ETA from
//! the plan's schedule of the estimates, scaled by how long finished stages really took. The
//! binary prints the lines; nothing here prints.

use crate::exec::Event;
use crate::plan::{Plan, TWO_JOB_GAIN};

/// Peak memory of one stage, for the default number of jobs: training peaks at 3.3 GB on the
/// `risk` files and 4.1 GB on the codeword dialogues of `quick`.
pub const STAGE_MEMORY_BYTES: u64 = 4 << 30;

/// Stages at once by default: one per thread, as many as the available memory holds.
pub fn auto_jobs(threads: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let by_memory = available.map_or(threads, |b| (b / STAGE_MEMORY_BYTES).max(1) as usize);
    threads.min(by_memory).max(1)
}

/// `1h02m`, `3m05s`, `42s`.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A line about the run, and whether it marks a finished stage (a progress bar advances).
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Print it.
    Note(String),
    /// A stage started: the bar's message, or a line without a bar.
    Started { message: String, line: String },
    /// A stage finished: print it, advance the bar.
    Finished(String),
}

/// Follows a run's events and says where it stands.
pub struct RunTracker {
    plan: Plan,
    jobs: usize,
    cores: usize,
    remaining: Vec<bool>,
    /// Threads of each started stage.
    threads: Vec<usize>,
    estimated_done: f64,
    actual_done: f64,
    pub total: usize,
    pub finished: usize,
    /// Stages run by this process (not found finished).
    pub ran: usize,
}

impl RunTracker {
    pub fn new(p: &Plan, done: &[bool], jobs: usize, cores: usize) -> RunTracker {
        RunTracker {
            plan: p.clone(),
            jobs,
            cores,
            remaining: done.iter().map(|d| !d).collect(),
            threads: vec![cores; p.stages.len()],
            estimated_done: 0.0,
            actual_done: 0.0,
            total: p.stages.len(),
            finished: 0,
            ran: 0,
        }
    }

    /// The time left, as `hms`.
    pub fn eta(&self) -> String {
        let done: Vec<bool> = self.remaining.iter().map(|r| !r).collect();
        let left = self.plan.estimate_wall_s(&done, self.jobs);
        // Estimates scaled by how long finished stages took against their estimates (a stage
        // on fewer threads than the run has is expected to take 2 / TWO_JOB_GAIN as long),
        // with a minute of prior weight so one quick stage does not swing the ETA.
        const PRIOR_S: f64 = 60.0;
        let scale = (self.actual_done + PRIOR_S) / (self.estimated_done + PRIOR_S);
        hms(left * scale)
    }

    /// What to tell the user about `ev` (None: nothing).
    pub fn event(&mut self, ev: Event) -> Option<Line> {
        match ev {
            Event::Planned { total, finished } => {
                self.finished = finished;
                Some(Line::Note(format!(
                    "{finished} of {total} stages already finished; about {} to go",
                    self.eta()
                )))
            }
            Event::Cached { .. } => None,
            Event::Started {
                index,
                stage,
                threads,
            } => {
                self.threads[index] = threads;
                let message = format!(
                    "{} ({threads} thread{}; eta {})",
                    stage.name,
                    if threads == 1 { "" } else { "s" },
                    self.eta()
                );
                let line = format!("[{}/{}] start {message}", self.finished + 1, self.total);
                Some(Line::Started { message, line })
            }
            Event::Finished {
                index,
                stage,
                wall_s,
            } => {
                self.finished += 1;
                self.ran += 1;
                self.remaining[index] = false;
                let alone = self.plan.stages[index].estimate_s;
                self.estimated_done += if self.threads[index] < self.cores {
                    alone * 2.0 / TWO_JOB_GAIN
                } else {
                    alone
                };
                self.actual_done += wall_s;
                Some(Line::Finished(format!(
                    "[{}/{}] done {} in {} (eta {})",
                    self.finished,
                    self.total,
                    stage.name,
                    hms(wall_s),
                    self.eta()
                )))
            }
        }
    }
}

/// The plan as `run --dry-run` prints it: the experiment, its base model, one line per stage
/// (kind, estimate, cached or to run) and the estimated time with `jobs` stages at once.
pub fn render_plan(p: &crate::Plan, done: &[bool], jobs: usize) -> String {
    let mut out = format!(
        "experiment `{}`: {}\nbase model: {} (sha256 {})\n{:>3}  {:<6}  {:>8}  {:<8}  stage\n",
        p.experiment.name,
        p.experiment.title,
        p.model.reference,
        &p.model.sha256[..16.min(p.model.sha256.len())],
        "#",
        "kind",
        "estimate",
        "status"
    );
    for (i, (st, d)) in p.stages.iter().zip(done).enumerate() {
        out.push_str(&format!(
            "{:>3}  {:<6}  {:>8}  {:<8}  {}\n",
            i + 1,
            st.kind.name(),
            hms(st.estimate_s),
            if *d { "cached" } else { "to run" },
            st.name
        ));
    }
    out.push_str(&format!(
        "estimated time: {} for {} of {} stages (embedded model, 2 cores, up to {} at once; {} one after the other)",
        hms(p.estimate_wall_s(done, jobs)),
        done.iter().filter(|d| !**d).count(),
        p.stages.len(),
        jobs,
        hms(p.estimate_s(done)),
    ));
    for l in &p.left_out {
        out.push_str(&format!("\nleft out: {l}"));
    }
    out
}

/// `selfaware experiments`: every preset with its estimated time on 2 cores and its stage
/// count; `sha256` stands for the embedded model's weights.
pub fn render_presets(sha256: &str) -> crate::Result<String> {
    // The name column is as wide as the longest name.
    let w = crate::preset_names()
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{:<w$}  {:>9}  {:>6}  title\n",
        "name", "estimate", "stages"
    );
    for name in crate::preset_names() {
        let e = crate::preset(name)?;
        let p = crate::plan_without_files(&e, sha256)?;
        let est = p.estimate_wall_s(&vec![false; p.stages.len()], 2);
        out.push_str(&format!(
            "{:<w$}  {:>9}  {:>6}  {}\n",
            name,
            hms(est),
            p.stages.len(),
            e.title
        ));
    }
    out.push_str(
        "\nestimates are for the embedded model on 2 cores; `selfaware run NAME --dry-run` shows the stages",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(hms(42.4), "42s");
        assert_eq!(hms(185.0), "3m05s");
        assert_eq!(hms(3720.0), "1h02m");
        assert_eq!(hms(-3.0), "0s");
    }

    #[test]
    fn jobs_are_at_least_one_and_at_most_the_threads() {
        assert_eq!(auto_jobs(0), 1);
        assert!(auto_jobs(2) <= 2);
    }
}
