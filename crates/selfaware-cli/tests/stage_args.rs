//! Experiments run their stages as `selfaware` command lines, checked here with the binary's
//! own parser.
use selfaware_run::experiment::RemoteSpec;

/// Experiments run stages as `selfaware` command lines: a renamed or removed flag, or a
/// value the binary no longer accepts, fails here instead of in the middle of a run.
#[test]
fn every_stage_of_every_built_in_experiment_parses_locally_and_remotely() {
    for name in selfaware_run::preset_names() {
        let mut local = selfaware_run::preset(name).unwrap();
        local.model = "default".into();
        let mut remote = local.clone();
        remote.remote = Some(RemoteSpec {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key_env: Some("SELFAWARE_TEST_KEY".into()),
            poll_s: Some(1.0),
            timeout_s: Some(60.0),
            estimate: true,
        });
        // And every condition steered (local only: a served model cannot be).
        let mut steered = local.clone();
        for c in &mut steered.conditions {
            c.steer = Some(selfaware_run::experiment::SteerCondition {
                vector: Some("d.safetensors".into()),
                point: Some("blocks.3.hook_resid_post".into()),
                from: None,
                alphas: vec![-0.5],
            });
        }
        for e in [local, remote, steered] {
            let p = selfaware_run::plan_without_files(&e, &"0".repeat(64)).unwrap();
            assert!(!p.stages.is_empty());
            for st in &p.stages {
                let argv = std::iter::once("selfaware".to_string()).chain(st.args.clone());
                if let Err(err) = selfaware_cli::check_args(argv) {
                    panic!("{name}: stage `{}` ({:?}): {err}", st.name, st.args);
                }
            }
        }
    }
}
