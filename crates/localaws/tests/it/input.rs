//! Bad input: a clear error (exit 2 from the binary), never a panic, whoever built the stack.

use std::sync::Arc;

use localaws::{DataPlane, DataPlaneError, Options, ProcessRuntime};

use crate::util::test_stack;

#[tokio::test]
async fn data_plane_refuses_a_listener_off_loopback_even_for_a_stack_built_in_code() {
    // The stack parser refuses it; a `Stack` value built in code never went through the parser.
    let mut stack = test_stack();
    stack.load_balancers[0].address = "0.0.0.0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.ephemeral_ports = true;
    let err = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
        .await
        .expect_err("a listener on 0.0.0.0 was started");
    assert!(matches!(err, DataPlaneError::Invalid(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("0.0.0.0") && msg.contains("loopback"), "{msg}");

    // Positive twin: the same stack on a loopback address other than 127.0.0.1 starts.
    let mut stack = test_stack();
    stack.load_balancers[0].address = "127.0.0.2".parse().unwrap();
    let mut options = Options::new(dir.path());
    options.ephemeral_ports = true;
    let plane = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
        .await
        .expect("a loopback listener");
    assert!(
        plane
            .listeners()
            .iter()
            .all(|l| l.addr().ip().is_loopback())
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn data_plane_refuses_a_health_check_path_that_is_not_a_path() {
    let mut stack = test_stack();
    stack.target_groups[0].health_check.path = "/re ady".into();
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.ephemeral_ports = true;
    let err = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
        .await
        .expect_err("an invalid health-check path was accepted");
    let msg = err.to_string();
    assert!(msg.contains("blue") && msg.contains("path"), "{msg}");
}

#[tokio::test]
async fn cli_refuses_bad_names_paths_and_environments_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = toml::to_string(&test_stack()).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"blue\"", "name = \"\"", "target_groups[0].name"),
        ("name = \"lb\"", "name = \"\"", "load_balancers[0].name"),
        (
            "name = \"production\"",
            "name = \"\"",
            "load_balancers[0].listeners[0].name",
        ),
        ("name = \"default\"", "name = \"\"", "cluster.name"),
        (
            "path = \"/ready\"",
            "path = \"/re ady\"",
            "target_groups[0].health_check.path",
        ),
        (
            "LOG_FORMAT = \"json\"",
            "\"LOG=FORMAT\" = \"json\"",
            "images.server.environment",
        ),
        (
            "LOG_FORMAT = \"json\"",
            "\"\" = \"json\"",
            "images.server.environment",
        ),
    ];
    for (i, (from, to, field)) in cases.iter().enumerate() {
        assert!(good.contains(from), "{from:?} not in {good}");
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_localaws"))
            .arg("check")
            .arg(&path)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert!(
            stderr.contains(field) && !stderr.contains("panicked"),
            "{to}: {stderr}"
        );
    }
}
