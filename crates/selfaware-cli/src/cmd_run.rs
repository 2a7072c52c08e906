//! `selfaware run`, `experiments`, `report` and `compare`: whole experiments.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use selfaware_model::home;
use selfaware_run::exec::{self, Event, ExecOptions, RunLock};
use selfaware_run::plan::{self, ModelRef, PlanInputs, TWO_JOB_GAIN};
use selfaware_run::{
    collect, Experiment, Machine, Plan, RunManifest, EXPERIMENT_FILE, MANIFEST_FILE, PLAN_FILE,
};
use selfaware_types::TOOL_VERSION;

use crate::settings::Settings;

#[derive(Args)]
pub struct RunArgs {
    /// A built-in experiment (see `selfaware experiments`) or an experiment TOML file.
    #[arg(value_name = "NAME|FILE")]
    pub experiment: String,
    /// Run folder. Default: runs/NAME. Rerunning into the same folder resumes.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the plan with an estimated time, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stages run at once, at most. Default: one per core, as far as memory allows (4 GiB per
    /// stage). Each stage gets the threads that are free when it starts: two finetunes on one
    /// core each finish sooner than one after the other on two.
    #[arg(long)]
    pub jobs: Option<usize>,
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

fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The base model's identity as children will see it.
fn model_ref(s: &Settings, reference: &str, dry_run: bool) -> Result<ModelRef> {
    if reference == "default" {
        if !dry_run {
            // Installs it when missing, with progress lines.
            s.model_source("default")?;
        }
        return Ok(ModelRef {
            reference: "default".into(),
            sha256: home::DEFAULT_SHA256.into(),
        });
    }
    let path = std::path::absolute(reference)
        .with_context(|| format!("model {reference:?}: cannot make the path absolute"))?;
    let sha = if path.is_dir() {
        let e = s.load_engine(&path.display().to_string())?;
        e.info.sha256.clone()
    } else {
        selfaware_model::file_sha256(&path)
            .with_context(|| format!("model {}: cannot hash it", path.display()))?
    };
    Ok(ModelRef {
        reference: path.display().to_string(),
        sha256: sha,
    })
}

fn make_plan(s: &Settings, e: &Experiment, dry_run: bool) -> Result<Plan> {
    let model = match &e.remote {
        Some(r) => plan::remote_model_ref(r, &e.model),
        None => model_ref(s, &e.model, dry_run)?,
    };
    let batteries = selfaware_run::battery_inputs(e)?;
    let mut data_files = BTreeMap::new();
    for c in &e.conditions {
        if let Some(f) = c.data.as_ref().and_then(|d| d.file.as_ref()) {
            let sha = exec::file_sha256(f)
                .with_context(|| format!("condition {}: dataset file {}", c.id, f.display()))?;
            data_files.insert(c.id.clone(), sha);
        }
    }
    Ok(plan::plan(
        e,
        &PlanInputs {
            model,
            batteries: &batteries,
            data_files: &data_files,
        },
    )?)
}

pub fn experiments() -> Result<()> {
    println!("{:<14}  {:>9}  {:>6}  title", "name", "estimate", "stages");
    for name in selfaware_run::preset_names() {
        let e = selfaware_run::preset(name)?;
        let batteries = selfaware_run::battery_inputs(&e)?;
        let p = plan::plan(
            &e,
            &PlanInputs {
                model: ModelRef {
                    reference: e.model.clone(),
                    sha256: home::DEFAULT_SHA256.into(),
                },
                batteries: &batteries,
                data_files: &BTreeMap::new(),
            },
        )?;
        let est = p.estimate_wall_s(&vec![false; p.stages.len()], 2);
        println!(
            "{:<14}  {:>9}  {:>6}  {}",
            name,
            hms(est),
            p.stages.len(),
            e.title
        );
    }
    println!("\nestimates are for the embedded model on 2 cores; `selfaware run NAME --dry-run` shows the stages");
    Ok(())
}

fn print_plan(p: &Plan, done: &[bool], jobs: usize) {
    println!("experiment `{}`: {}", p.experiment.name, p.experiment.title);
    println!(
        "base model: {} (sha256 {})",
        p.model.reference,
        &p.model.sha256[..16]
    );
    println!(
        "{:>3}  {:<6}  {:>8}  {:<8}  stage",
        "#", "kind", "estimate", "status"
    );
    for (i, (st, d)) in p.stages.iter().zip(done).enumerate() {
        println!(
            "{:>3}  {:<6}  {:>8}  {:<8}  {}",
            i + 1,
            st.kind.name(),
            hms(st.estimate_s),
            if *d { "cached" } else { "to run" },
            st.name
        );
    }
    println!(
        "estimated time: {} for {} of {} stages (embedded model, 2 cores, up to {} at once; {} one after the other)",
        hms(p.estimate_wall_s(done, jobs)),
        done.iter().filter(|d| !**d).count(),
        p.stages.len(),
        jobs,
        hms(p.estimate_s(done)),
    );
}

/// Peak memory of one stage, for the default `--jobs`: training peaks at 3.3 GB on the `risk`
/// files and 4.1 GB on the codeword dialogues of `quick`.
const STAGE_MEMORY_BYTES: u64 = 4 << 30;

/// The default `--jobs`: one stage per thread, as far as available memory allows.
fn auto_jobs(threads: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let by_memory = available.map_or(threads, |b| (b / STAGE_MEMORY_BYTES).max(1) as usize);
    threads.min(by_memory).max(1)
}

pub fn run(s: &Settings, threads: Option<usize>, a: RunArgs) -> Result<()> {
    let (e, source) = selfaware_run::resolve(&a.experiment)?;
    let run_dir = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(&e.name));
    if !a.dry_run {
        if let Ok(old) = collect::read_plan(&run_dir) {
            if old.experiment.name != e.name {
                return Err(selfaware_run::RunError::OtherExperiment {
                    path: run_dir.clone(),
                    found: old.experiment.name,
                    expected: e.name.clone(),
                }
                .into());
            }
        }
    }
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
        print_plan(&p, &done, jobs);
        return Ok(());
    }
    let _lock = RunLock::acquire(&run_dir)?;
    let text = toml::to_string(&e).context("writing the resolved experiment")?;
    exec::write_atomic(&run_dir.join(EXPERIMENT_FILE), text.as_bytes())?;
    selfaware_run::write_json(&run_dir.join(PLAN_FILE), &p)?;
    let mut manifest = RunManifest {
        tool_version: TOOL_VERSION.to_string(),
        git_revision: Some(env!("SELFAWARE_GIT_REVISION").to_string()),
        machine: Machine::current(),
        jobs,
        threads,
        model: p.model.clone(),
        datasets: BTreeMap::new(),
        adapters: BTreeMap::new(),
        remote_models: BTreeMap::new(),
        seeds: e.seeds.clone(),
        experiment_source: source,
        experiment: e.clone(),
        stage_wall_s: BTreeMap::new(),
        complete: false,
    };
    selfaware_run::record_outputs(&run_dir, &p, &mut manifest);
    selfaware_run::write_json(&run_dir.join(MANIFEST_FILE), &manifest)?;

    let exe = std::env::current_exe().context("finding the selfaware executable")?;
    let opts = ExecOptions {
        exe,
        jobs,
        cores: threads,
        env: vec![(
            "SELFAWARE_HOME".to_string(),
            std::path::absolute(&s.home)?.display().to_string(),
        )],
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
    exec::execute(&run_dir, &p, &opts, &mut |ev| progress.event(ev))?;
    progress.finish();
    selfaware_run::record_outputs(&run_dir, &p, &mut manifest);
    manifest.complete = true;
    selfaware_run::write_json(&run_dir.join(MANIFEST_FILE), &manifest)?;
    let results = collect::collect(&run_dir, &p, &manifest)?;
    let files = selfaware_report::write_report(&run_dir, &results)?;
    eprintln!(
        "selfaware: finished in {} ({} stages ran this time)",
        hms(started.elapsed().as_secs_f64()),
        progress.ran
    );
    print_summary(&results);
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// The headline numbers on the terminal: probes first, then each question.
fn print_summary(r: &selfaware_report::Results) {
    let fmt = |c: &selfaware_report::Cell| match (c.mean, c.ci_low, c.ci_high) {
        (Some(m), Some(l), Some(h)) => format!("{m:.3} [{l:.3}, {h:.3}]"),
        (Some(m), _, _) => format!("{m:.3}"),
        _ => "—".to_string(),
    };
    let width = r
        .probes
        .iter()
        .chain(&r.questions)
        .map(|m| m.id.len())
        .max()
        .unwrap_or(10)
        .max(10);
    print!("\n{:<width$}", "metric");
    for c in &r.conditions {
        print!("  {:>24}", c.id);
    }
    println!();
    for m in r.probes.iter().chain(&r.questions) {
        print!("{:<width$}", m.id);
        for c in &r.conditions {
            let cell = m.cells.iter().find(|x| x.condition == c.id);
            print!("  {:>24}", cell.map(fmt).unwrap_or_else(|| "—".into()));
        }
        println!();
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
}

/// Stage progress: a bar on a terminal, else one line per event, with an ETA from the plan's
/// schedule of the estimates, scaled by how long finished stages really took.
struct RunProgress {
    bar: Option<indicatif::ProgressBar>,
    plan: Plan,
    jobs: usize,
    cores: usize,
    remaining: Vec<bool>,
    /// Threads of each started stage.
    threads: Vec<usize>,
    estimated_done: f64,
    actual_done: f64,
    total: usize,
    finished: usize,
    ran: usize,
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

    fn eta(&self) -> String {
        let done: Vec<bool> = self.remaining.iter().map(|r| !r).collect();
        let left = self.plan.estimate_wall_s(&done, self.jobs);
        // Estimates scaled by how long finished stages took against their estimates (a stage
        // on fewer threads than the run has is expected to take 2 / TWO_JOB_GAIN as long),
        // with a minute of prior weight so one quick stage does not swing the ETA.
        const PRIOR_S: f64 = 60.0;
        let scale = (self.actual_done + PRIOR_S) / (self.estimated_done + PRIOR_S);
        hms(left * scale)
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Planned { total, finished } => {
                self.finished = finished;
                let msg = format!(
                    "{finished} of {total} stages already finished; about {} to go",
                    self.eta()
                );
                match &self.bar {
                    Some(b) => {
                        b.set_position(finished as u64);
                        b.println(format!("selfaware: {msg}"));
                    }
                    None => eprintln!("selfaware: {msg}"),
                }
            }
            Event::Cached { .. } => {}
            Event::Started {
                index,
                stage,
                threads,
            } => {
                self.threads[index] = threads;
                let msg = format!(
                    "{} ({threads} thread{}; eta {})",
                    stage.name,
                    if threads == 1 { "" } else { "s" },
                    self.eta()
                );
                match &self.bar {
                    Some(b) => b.set_message(msg),
                    None => eprintln!(
                        "selfaware: [{}/{}] start {msg}",
                        self.finished + 1,
                        self.total
                    ),
                }
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
                let msg = format!(
                    "[{}/{}] done {} in {} (eta {})",
                    self.finished,
                    self.total,
                    stage.name,
                    hms(wall_s),
                    self.eta()
                );
                match &self.bar {
                    Some(b) => {
                        b.inc(1);
                        b.println(format!("selfaware: {msg}"));
                    }
                    None => eprintln!("selfaware: {msg}"),
                }
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
