//! `selfaware run`, `experiments`, `report` and `compare`: whole experiments.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use selfaware_model::home;
use selfaware_run::exec::{self, Event, RunLock};
use selfaware_run::plan::{self, ModelIdentity};
use selfaware_run::progress::{auto_jobs, hms, render_plan, render_presets, Line, RunTracker};
use selfaware_run::{collect, Experiment, Plan, RunSettings};

use crate::settings::Settings;

#[derive(Args)]
pub struct RunArgs {
    /// A built-in experiment (see `selfaware experiments`) or an experiment TOML file.
    #[arg(value_name = "NAME|FILE")]
    pub experiment: String,
    /// Run folder. Default: runs/NAME. Rerunning into the same folder resumes; a folder that
    /// holds something other than a run (or the experiment file itself) is refused.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the plan with an estimated time, and run nothing (the experiment and the run
    /// folder are checked as for a real run).
    #[arg(long)]
    pub dry_run: bool,
    /// Write the run into a --out folder that holds files of something else (they are left
    /// as they are, unless a run file has their name: report.md, results.*, plan.json, ...).
    #[arg(long)]
    pub force: bool,
    /// Stages run at once, at most. Default: one per core, as far as memory allows (4 GiB per
    /// stage). Each stage gets the threads that are free when it starts: two finetunes on one
    /// core each finish sooner than one after the other on two.
    #[arg(long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub judge: crate::model_args::JudgeArgs,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A run folder.
    pub run: PathBuf,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The first run folder (or its results.json).
    pub a: PathBuf,
    /// The second run folder (or its results.json).
    pub b: PathBuf,
}

fn make_plan(s: &Settings, e: &Experiment, dry_run: bool) -> Result<Plan> {
    let model = match &e.remote {
        Some(r) => plan::remote_model_ref(r, &e.model),
        None => {
            let (reference, sha256) = selfaware_backend::ModelRef::parse(&e.model)?
                .local_identity(&s.open_options(None, false), !dry_run)
                .with_context(|| {
                    format!("model {:?} (a served model goes in [remote])", e.model)
                })?;
            ModelIdentity { reference, sha256 }
        }
    };
    Ok(selfaware_run::plan_with_model(e, model)?)
}

pub fn experiments() -> Result<()> {
    println!("{}", render_presets(home::DEFAULT_SHA256)?);
    Ok(())
}

pub fn run(s: &Settings, threads: Option<usize>, a: RunArgs) -> Result<()> {
    let (mut e, source) = selfaware_run::resolve(&a.experiment)?;
    if let Some(j) = a.judge.spec() {
        e.judge = Some(j);
    }
    let run_dir = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(&e.name));
    selfaware_run::check_run_dir(&run_dir, &e, &source, a.force)?;
    let p = make_plan(s, &e, a.dry_run)?;
    let done: Vec<bool> = p
        .stages
        .iter()
        .map(|st| exec::finished(&run_dir, st).is_some())
        .collect();
    if a.jobs == Some(0) {
        bail!("--jobs: expected at least 1");
    }
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let jobs = a.jobs.unwrap_or_else(|| auto_jobs(threads));
    if a.dry_run {
        println!("{}", render_plan(&p, &done, jobs));
        return Ok(());
    }
    let _lock = RunLock::acquire(&run_dir)?;
    let settings = RunSettings {
        run_dir: run_dir.clone(),
        experiment_source: source,
        jobs,
        threads,
        // The Python package's command runs inside the interpreter: it names itself.
        exe: match std::env::var_os("SELFAWARE_EXE") {
            Some(p) => p.into(),
            None => std::env::current_exe().context("finding the selfaware executable")?,
        },
        env: vec![(
            "SELFAWARE_HOME".to_string(),
            std::path::absolute(&s.home)?.display().to_string(),
        )],
        git_revision: Some(env!("SELFAWARE_GIT_REVISION").to_string()),
    };
    eprintln!(
        "selfaware: run folder {} ({} stages; up to {} at once on {} threads)",
        run_dir.display(),
        p.stages.len(),
        jobs,
        threads
    );
    let mut progress = RunProgress::new(&p, &done, jobs, threads);
    let started = Instant::now();
    let (results, files) =
        selfaware_run::run_plan(&e, &p, &settings, &mut |ev| progress.event(ev))?;
    progress.finish();
    eprintln!(
        "selfaware: finished in {} ({} stages ran this time)",
        hms(started.elapsed().as_secs_f64()),
        progress.tracker.ran
    );
    print!("{}", selfaware_report::render_summary_text(&results));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// Stage progress: a bar on a terminal, else one line per event.
struct RunProgress {
    bar: Option<indicatif::ProgressBar>,
    tracker: RunTracker,
}

impl RunProgress {
    fn new(p: &Plan, done: &[bool], jobs: usize, cores: usize) -> RunProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(p.stages.len() as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} stages  {msg}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        RunProgress {
            bar,
            tracker: RunTracker::new(p, done, jobs, cores),
        }
    }

    fn event(&mut self, ev: Event) {
        let Some(line) = self.tracker.event(ev) else {
            return;
        };
        match (&self.bar, line) {
            (Some(b), Line::Note(m)) => {
                b.set_position(self.tracker.finished as u64);
                b.println(format!("selfaware: {m}"));
            }
            (Some(b), Line::Started { message, .. }) => b.set_message(message),
            (Some(b), Line::Finished(m)) => {
                b.inc(1);
                b.println(format!("selfaware: {m}"));
            }
            (None, Line::Note(m) | Line::Started { line: m, .. } | Line::Finished(m)) => {
                eprintln!("selfaware: {m}")
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn report(a: ReportArgs) -> Result<()> {
    let p = collect::read_plan(&a.run)?;
    let manifest = selfaware_run::read_manifest(&a.run)?;
    if !manifest.complete {
        bail!(
            "{}: the run has not finished\nhint: rerun `selfaware run` with the same experiment and --out to finish it",
            a.run.display()
        );
    }
    let results = collect::collect(&a.run, &p, &manifest)?;
    for f in selfaware_report::write_report(&a.run, &results)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn results_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("results.json")
    } else {
        p.to_path_buf()
    }
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let ra = selfaware_report::read_results(results_path(&a.a))?;
    let rb = selfaware_report::read_results(results_path(&a.b))?;
    let c = selfaware_report::compare(&ra, &rb);
    print!("{}", selfaware_report::render_comparison_text(&c));
    Ok(())
}
