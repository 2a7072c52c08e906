//! What a run may do with its output folder: new, a run of the same experiment (resumed), or
//! an error naming the file; the experiment file being run is never rewritten.

use std::path::Path;

use selfaware_run::{check_run_dir, write_resolved_experiment, Experiment, RunError};

const EXP: &str = r#"# My experiment: the comments and the layout must survive a run.
name = "mine"   # a short name
title = "Mine"
seeds = [0]

[[condition]]
id = "base"
label = "base"

[[battery]]
battery = "risk"
limit = 1
"#;

fn experiment(dir: &Path) -> (Experiment, String) {
    let path = dir.join("experiment.toml");
    std::fs::write(&path, EXP).unwrap();
    let source = path.display().to_string();
    (Experiment::load(&path).unwrap(), source)
}

#[test]
fn the_experiment_file_in_the_run_folder_stays_byte_identical() {
    let d = tempfile::tempdir().unwrap();
    let (e, source) = experiment(d.path());
    // A folder holding only the experiment being run is a new run folder.
    check_run_dir(d.path(), &e, &source, false).unwrap();
    write_resolved_experiment(d.path(), &e, &source).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("experiment.toml")).unwrap(),
        EXP
    );
    // Named through another path to the same file: still the input.
    let other = d.path().join(".").join("experiment.toml");
    write_resolved_experiment(d.path(), &e, &other.display().to_string()).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("experiment.toml")).unwrap(),
        EXP
    );
    // Elsewhere, the resolved experiment is written (and reads back as the same experiment).
    let out = tempfile::tempdir().unwrap();
    write_resolved_experiment(out.path(), &e, &source).unwrap();
    let written = std::fs::read_to_string(out.path().join("experiment.toml")).unwrap();
    assert!(!written.contains('#'), "{written}");
    assert_eq!(
        Experiment::from_toml_str(&written, "w").unwrap().name,
        "mine"
    );
}

#[test]
fn a_folder_that_is_not_a_run_is_refused_without_force() {
    let src = tempfile::tempdir().unwrap();
    let (e, source) = experiment(src.path());
    let d = tempfile::tempdir().unwrap();
    check_run_dir(&d.path().join("new"), &e, &source, false).unwrap();
    check_run_dir(d.path(), &e, &source, false).unwrap();
    // What a run writes before its plan (a killed first start) is its own.
    std::fs::write(d.path().join(".lock"), "").unwrap();
    write_resolved_experiment(d.path(), &e, &source).unwrap();
    check_run_dir(d.path(), &e, &source, false).unwrap();
    // A user's report.md is not.
    std::fs::write(d.path().join("report.md"), "my notes").unwrap();
    match check_run_dir(d.path(), &e, &source, false) {
        Err(RunError::NotARun { path }) => assert_eq!(path, d.path().join("report.md")),
        other => panic!("{other:?}"),
    }
    let msg = check_run_dir(d.path(), &e, &source, false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--force"), "{msg}");
    check_run_dir(d.path(), &e, &source, true).unwrap();
    // Nor is the resolved experiment of another experiment.
    let o = tempfile::tempdir().unwrap();
    let other = Experiment::from_toml_str(&EXP.replace("\"mine\"", "\"other\""), "o").unwrap();
    write_resolved_experiment(o.path(), &other, "preset:other").unwrap();
    assert!(matches!(
        check_run_dir(o.path(), &e, &source, false),
        Err(RunError::NotARun { .. })
    ));
}

#[test]
fn a_run_folder_is_resumed_only_by_its_experiment() {
    let src = tempfile::tempdir().unwrap();
    let (e, source) = experiment(src.path());
    let d = tempfile::tempdir().unwrap();
    let batteries = selfaware_run::battery_inputs(&e).unwrap();
    let p = selfaware_run::plan::plan(
        &e,
        &selfaware_run::PlanInputs {
            model: selfaware_run::plan::ModelIdentity {
                reference: "default".into(),
                sha256: "0".repeat(64),
            },
            batteries: &batteries,
            data_files: &Default::default(),
            steer_files: &Default::default(),
        },
    )
    .unwrap();
    selfaware_run::write_json(&d.path().join(selfaware_run::PLAN_FILE), &p).unwrap();
    std::fs::create_dir_all(d.path().join("logs")).unwrap();
    check_run_dir(d.path(), &e, &source, false).unwrap();
    let other = Experiment::from_toml_str(&EXP.replace("\"mine\"", "\"other\""), "o").unwrap();
    for force in [false, true] {
        assert!(matches!(
            check_run_dir(d.path(), &other, "preset:other", force),
            Err(RunError::OtherExperiment { .. })
        ));
    }
}
