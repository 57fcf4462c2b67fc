//! `orchestrate refresh` and `orchestrate rehearse` end to end: the real binary against an
//! in-process `localaws` (real tasks, real listeners), the probe measuring production.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use localaws::control::ec2::{NewVersion, TemplateRef};
use localaws::dataplane::AddressBlock;
use localaws::{Localaws, Options};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_orchestrate");

/// localaws with the rehearsal's stack, tasks run by this crate's binary (`orchestrate server`),
/// and launch template version 2 ready to refresh to.
async fn fleet(managed_draining: bool, dir: &Path) -> Localaws {
    let stack = orchestrate::rehearse::stack(managed_draining, 60.0).unwrap();
    fleet_of(stack, dir).await
}

/// [`fleet`] of `stack`.
async fn fleet_of(stack: localaws::Stack, dir: &Path) -> Localaws {
    let mut options = Options::new(dir);
    options.ephemeral_ports = true;
    options.server = Some((BIN.into(), vec!["server".to_owned()]));
    let la = Localaws::start(stack, options, 0).await.unwrap();
    assert!(la.wait_ready(la.ready_timeout()).await, "fleet not ready");
    la.control()
        .create_launch_template_version(
            &TemplateRef::Name("demo-lt".into()),
            NewVersion {
                source_version: Some("1".into()),
                image_id: Some("ami-0ecs000000000002".into()),
                ..NewVersion::default()
            },
        )
        .unwrap();
    la
}

/// `orchestrate` pointed at `endpoint` with throwaway credentials, as a user points it at
/// localaws.
fn orchestrate_at(endpoint: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    c
}

fn refresh_command(la: &Localaws, report: &Path, extra: &[&str]) -> Command {
    let mut c = orchestrate_at(&la.endpoint());
    c.args([
        "refresh",
        "--asg",
        "demo-asg",
        "--launch-template-version",
        "2",
    ])
    .args(["--url", &la.listener_url("production").unwrap()])
    .args(["--rate", "500", "--poll", "50ms", "--settle", "1s"])
    .arg("--report-dir")
    .arg(report)
    .args(extra)
    .env("AWS_ENDPOINT_URL", la.endpoint())
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .env("AWS_REGION", "us-east-1")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    c
}

/// The last refresh's `ScaleInProtectedInstances`, as localaws took it.
fn refresh_scale_in_protected(la: &Localaws) -> String {
    la.control().read(|st| {
        st.refreshes
            .last()
            .map(|r| r.prefs.scale_in_protected.as_str().to_owned())
            .unwrap_or_default()
    })
}

/// All production traffic on blue (after a stop with rollback).
fn assert_production_on_blue(la: &Localaws) {
    let weights = la
        .plane()
        .listener("production")
        .unwrap()
        .forward()
        .weights();
    assert_eq!(weights[0], ("demo-tg-blue".to_owned(), 100), "{weights:?}");
}

fn refresh_status(la: &Localaws) -> String {
    la.control().read(|st| {
        st.refreshes
            .last()
            .map(|r| r.status.to_string())
            .unwrap_or_default()
    })
}

/// Waits until `child` prints a line containing `needle` (panics with `never` after a minute),
/// sends it SIGINT (Ctrl-C), and returns its exit status and the rest of its output.
async fn interrupt_at(
    child: &mut tokio::process::Child,
    needle: &str,
    never: &str,
) -> (std::process::ExitStatus, String) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut before = String::new();
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return true;
            }
            before.push_str(&line);
            before.push('\n');
        }
        false
    })
    .await;
    assert_eq!(seen.ok(), Some(true), "{never}; its output:\n{before}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let rest = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("orchestrate did not exit after Ctrl-C")
        .unwrap();
    (status, rest.await.unwrap())
}

fn probe_report(dir: &Path) -> loadprobe::Report {
    let f = std::fs::File::open(dir.join("probe.json")).unwrap();
    loadprobe::Report::from_json(f).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_succeeds_with_zero_errors_and_exits_0() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let la = fleet(true, &dir.path().join("la")).await;
    let reports = dir.path().join("reports");
    let out = refresh_command(&la, &reports, &[]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": Successful"), "{stdout}");
    assert_eq!(refresh_status(&la), "Successful");
    // Without --scale-in-protected-instances the preference is not sent: AWS's default, Wait.
    assert_eq!(refresh_scale_in_protected(&la), "Wait");
    let r = probe_report(&reports);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors.by_kind);
    assert_eq!(r.requests, r.ok);
    assert!(r.requests > 0);
    assert!(
        r.events
            .iter()
            .any(|e| e.label.contains("refresh Successful")),
        "the refresh's progress is on the probe's timeline"
    );
    la.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_rolls_back_at_the_first_failed_request_and_exits_1() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    // Managed draining off: the first terminated instance takes its tasks with it.
    let la = fleet(false, &dir.path().join("la")).await;
    let reports = dir.path().join("reports");
    let out = refresh_command(&la, &reports, &[]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("gate: rollback requested"), "{stdout}");
    assert_eq!(refresh_status(&la), "RollbackSuccessful");
    let r = probe_report(&reports);
    assert!(r.errors.total > 0);
    let incident = &r.incidents[0];
    assert!(incident.kinds.contains_key("http_502_lb"), "{incident:?}");
    assert!(
        incident.failed_on.keys().any(|t| t != "(unknown)"),
        "the failures are attributed to a task: {incident:?}"
    );
    // The rollback call came within one probe interval of the first failed request, plus an
    // API round trip.
    let gate = r
        .events
        .iter()
        .find(|e| e.label.starts_with("gate: rollback requested"))
        .expect("gate marker");
    let reaction_ms: u64 = gate
        .label
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("reaction in the marker");
    assert!(
        reaction_ms < r.interval_ms + 500,
        "rollback called {reaction_ms} ms after the first failure"
    );
    assert!(
        gate.at_ms >= incident.start_ms as i64,
        "{gate:?} {incident:?}"
    );
    // After the rollback the old version serves again, healthy.
    assert!(la.wait_ready(la.ready_timeout()).await);
    la.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_refresh_rolls_back_and_the_fleet_serves() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let la = fleet(true, &dir.path().join("la")).await;
    let reports = dir.path().join("reports");
    // A checkpoint holds the refresh after its first replacement, where Ctrl-C lands.
    let mut child = refresh_command(
        &la,
        &reports,
        &[
            "--checkpoints",
            "30,100",
            "--checkpoint-delay",
            "1h",
            "--scale-in-protected-instances",
            "Refresh",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let (status, output) = interrupt_at(
        &mut child,
        "Waiting for checkpoint delay",
        "the refresh never reached its checkpoint",
    )
    .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("interrupted"), "{output}");
    assert_eq!(refresh_scale_in_protected(&la), "Refresh");
    let end = refresh_status(&la);
    assert!(
        end == "RollbackSuccessful" || end == "Cancelled",
        "refresh ended {end}"
    );
    assert!(la.wait_ready(la.ready_timeout()).await, "the fleet serves");
    assert!(
        reports.join("probe.html").is_file(),
        "the report is written"
    );
    la.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_bad_input_exits_2_naming_it() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let la = fleet(true, &dir.path().join("la")).await;
    let out = orchestrate_at(&la.endpoint())
        .args(["refresh", "--asg", "nope"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no auto scaling group named \"nope\""));
    let out = Command::new(BIN)
        .args(["refresh", "--asg", "demo-asg", "--min-healthy", "101"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["refresh", "--asg", "demo-asg"])
        .args(["--scale-in-protected-instances", "Replace"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--scale-in-protected-instances") && stderr.contains("Refresh"),
        "{stderr}"
    );
    la.shutdown().await;
    // An endpoint that is down: one line, exit 2.
    let out = orchestrate_at("http://127.0.0.1:9")
        .args(["refresh", "--asg", "demo-asg", "--region", "us-east-1"])
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach the AWS endpoint"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearse_runs_the_matrix_and_every_verdict_matches() {
    let _slot = crate::util::slot().await;
    let dir = crate::util::ReportDir::new();
    let summary = dir.path().join("summary.json");
    let out = Command::new(BIN)
        .arg("rehearse")
        .arg("--report-dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&summary)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("verdict: every scenario as expected"),
        "{stdout}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), orchestrate::rehearse::SCENARIOS.len());
    for row in rows {
        assert_eq!(row["as_expected"], true, "{row}");
        let name = row["scenario"].as_str().unwrap();
        assert!(dir.path().join(name).join("probe.html").is_file());
        let rollout = row["rollout"].as_str().unwrap();
        if row["expected"] == "pass" {
            assert_eq!(row["errors"], 0, "{row}");
            assert!(
                [
                    "refresh Successful",
                    "deploy Succeeded",
                    "deploy Failed, rolled back"
                ]
                .contains(&rollout),
                "{row}"
            );
        } else {
            assert!(row["errors"].as_u64().unwrap() > 0, "{row}");
            let incident = row["incident"].as_str().unwrap();
            assert!(
                incident.contains("http_502_lb") || incident.contains("http_500_target"),
                "{row}"
            );
            // Where the production stream failed, the gate reacted within one probe interval
            // plus an API round trip.
            if let Some(ms) = row["rollback_ms"].as_u64() {
                assert!(ms < 600, "{row}");
            }
        }
    }
    assert!(dir.path().join("index.html").is_file());
    // Bad input: exit 2, naming it.
    let out = Command::new(BIN)
        .args(["rehearse", "--scenario", "nope"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario \"nope\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearse_soak_repeats_the_matrix_and_checks_memory() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "rehearse",
            "--scenario",
            "refresh",
            "--soak",
            "12s",
            "--rate",
            "500",
        ])
        .arg("--report-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("soak round 2:"), "{stdout}");
    assert!(
        stdout.contains("RSS after round 1") && stdout.contains(": flat"),
        "{stdout}"
    );
    let out = Command::new(BIN)
        .args(["rehearse", "--soak", "0s"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--soak"));
}

/// `orchestrate deploy` pointed at localaws with the repository's own templates: `extra` adds
/// flags (the release's environment, validation).
fn deploy_command(
    la: &Localaws,
    report: &Path,
    appspec: &Path,
    version: &str,
    extra: &[&str],
) -> Command {
    let root = orchestrate::find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut c = orchestrate_at(&la.endpoint());
    c.args([
        "deploy",
        "--application",
        "demo-cd-app",
        "--deployment-group",
        "demo-dg",
    ])
    .arg("--taskdef")
    .arg(root.join("codedeploy/taskdef.template.json"))
    .arg("--appspec")
    .arg(appspec)
    .args(["--image", "server", "--app-version", version])
    .args([
        "--var",
        "EXECUTION_ROLE_ARN=arn:aws:iam::000000000000:role/exec",
        "--var",
        "TASK_ROLE_ARN=arn:aws:iam::000000000000:role/task",
        "--var",
        "AWS_REGION=us-east-1",
        "--var",
        "CAPACITY_PROVIDER=demo-cluster-cp",
        "--var",
        "VALIDATION_HOOK=validate",
        "--env",
        "DRAIN_DELAY_SECONDS=1",
        "--env",
        "SHUTDOWN_TIMEOUT_SECONDS=5",
    ])
    .args(["--url", &la.listener_url("production").unwrap()])
    .args(["--rate", "500", "--poll", "50ms", "--settle", "1s"])
    .arg("--report-dir")
    .arg(report)
    .args(extra)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    c
}

/// The deploy gate: a broken release (`/ready` passes, `/` answers 500) deployed without
/// test-traffic validation reaches production at the canary; the first failed request stops the
/// deployment with rollback: exit 1, every failure from v3, production back on blue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_gate_stops_a_broken_release_at_the_first_failed_request_and_exits_1() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let la = fleet(true, &dir.path().join("la")).await;
    let appspec = dir.path().join("appspec.yaml");
    let root = orchestrate::find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = std::fs::read_to_string(root.join("codedeploy/appspec.yaml")).unwrap();
    // The same AppSpec without its validation hook.
    std::fs::write(&appspec, &text[..text.find("\nHooks:").unwrap() + 1]).unwrap();
    let reports = dir.path().join("reports");
    let out = deploy_command(&la, &reports, &appspec, "v3", &["--env", "PAGE_STATUS=500"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("gate: stop with rollback (first failed request)"),
        "{stdout}"
    );
    assert!(stdout.contains(": Stopped"), "{stdout}");
    assert!(stdout.contains("rolled back by d-"), "{stdout}");
    let r = probe_report(&reports);
    assert!(r.errors.total > 0);
    assert_eq!(
        r.incidents[0]
            .versions
            .keys()
            .filter(|v| *v != "v1")
            .collect::<Vec<_>>(),
        ["v3"],
        "{:?}",
        r.incidents[0]
    );
    // Production serves v1 only again.
    assert_production_on_blue(&la);
    la.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_bad_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = orchestrate::find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    // A placeholder without a value is named; nothing is sent.
    let out = orchestrate_at("http://127.0.0.1:9")
        .args([
            "deploy",
            "--application",
            "a",
            "--deployment-group",
            "g",
            "--image",
            "x",
        ])
        .arg("--taskdef")
        .arg(root.join("codedeploy/taskdef.template.json"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("{{APP_VERSION}}"), "{stderr}");
    for (bad, needle) in [
        (vec!["--var", "=x"], "invalid --var"),
        (vec!["--hook-listen", "127.0.0.1:0"], "--test-url"),
        (vec!["--rate", "0"], "invalid --rate"),
        (vec!["--env", "NOEQUALS"], "cannot read the task definition"),
    ] {
        let out = orchestrate_at("http://127.0.0.1:9")
            .args(["deploy", "--application", "a", "--deployment-group", "g"])
            .arg("--taskdef")
            .arg(dir.path().join("missing.json"))
            .args(&bad)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(needle), "{bad:?}: {stderr}");
    }
}

/// Ctrl-C mid-deployment (during the canary): the safe thing without asking, a stop with
/// rollback; the deployment ends `Stopped`, all production traffic on blue, the report written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_deployment_stops_it_with_all_traffic_on_blue() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let la = fleet(true, &dir.path().join("la")).await;
    let root = orchestrate::find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let appspec = dir.path().join("appspec.yaml");
    let text = std::fs::read_to_string(root.join("codedeploy/appspec.yaml")).unwrap();
    std::fs::write(&appspec, &text[..text.find("\nHooks:").unwrap() + 1]).unwrap();
    let reports = dir.path().join("reports");
    let mut child = deploy_command(&la, &reports, &appspec, "v2", &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The canary holds 10 % on green for five simulated minutes: Ctrl-C lands there.
    let (status, output) = interrupt_at(
        &mut child,
        "Green 10%",
        "the deployment never reached its canary",
    )
    .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("interrupted"), "{output}");
    assert!(output.contains(": Stopped"), "{output}");
    let weights = la
        .plane()
        .listener("production")
        .unwrap()
        .forward()
        .weights();
    assert_eq!(
        weights,
        [
            ("demo-tg-blue".to_owned(), 100),
            ("demo-tg-green".to_owned(), 0)
        ]
    );
    assert!(
        reports.join("probe.html").is_file(),
        "the report is written"
    );
    let r = probe_report(&reports);
    assert_eq!(r.errors.total, 0, "{:?}", r.incidents);
    la.shutdown().await;
}

/// A missing permission and a throttled account, injected by localaws as AWS answers them: a
/// throttled call is retried by the SDK with backoff and then goes through; a refused
/// `StartInstanceRefresh` ends the command with one line naming the action, exit 2, nothing
/// started; throttling that persists past the retries is one line and exit 2 as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reports_missing_permissions_and_persistent_throttling_in_one_line() {
    use stack::{ApiFault, FaultKind};
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let mut stack = orchestrate::rehearse::stack(true, 60.0).unwrap();
    let fault = |action: &str, fault, times| ApiFault {
        action: action.into(),
        fault,
        times,
    };
    stack.api_faults = vec![
        fault(
            "autoscaling:DescribeAutoScalingGroups",
            FaultKind::Throttling,
            Some(2),
        ),
        fault(
            "autoscaling:StartInstanceRefresh",
            FaultKind::AccessDenied,
            None,
        ),
        fault(
            "autoscaling:DescribeInstanceRefreshes",
            FaultKind::Throttling,
            None,
        ),
    ];
    let mut options = Options::new(dir.path().join("la"));
    options.ephemeral_ports = true;
    options.server = Some((BIN.into(), vec!["server".to_owned()]));
    // Nothing here needs a healthy fleet: the commands stop before anything changes.
    let la = Localaws::start(stack, options, 0).await.unwrap();
    let out = orchestrate_at(&la.endpoint())
        .args([
            "refresh",
            "--asg",
            "demo-asg",
            "--launch-template-version",
            "1",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("AccessDenied") && stderr.contains("autoscaling:StartInstanceRefresh"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        la.control().read(|st| st.refreshes.is_empty()),
        "nothing was started"
    );
    let out = orchestrate_at(&la.endpoint())
        .args(["refresh", "--asg", "demo-asg", "--follow"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Throttling: Rate exceeded") && stderr.contains("retries"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    la.shutdown().await;
}

/// A loopback address for a server the test's child process will bind, that no other socket on
/// the machine can take before the child binds it, held while the returned block lives.
///
/// It was a port from `bind("127.0.0.1:0")`, closed again at once, and that port was free only
/// until it was closed: the kernel hands it to the next socket that asks for an ephemeral port.
/// With fleets side by side the probes' connections cycle through those ports all the time, and
/// under the flake hunt's CPU hog one took the hook's port between the test choosing it and
/// `orchestrate deploy` binding it (`cannot listen on --hook-listen 127.0.0.1:45255: Address
/// already in use`). Now it is the spare address of an address block this test claims, as a
/// data plane claims its instances' block (a lock per block, so no other process holds it).
fn hook_addr() -> (AddressBlock, std::net::SocketAddr) {
    let block = AddressBlock::claim();
    let addr = std::net::SocketAddr::from((block.spare_ip(), 8080));
    (block, addr)
}

/// The hook's address stays free while ephemeral ports churn on 127.0.0.1 (what took it before):
/// 64 listeners and 1,000 connections later, it still binds; two claims never share it.
#[test]
fn a_hook_address_stays_free_while_ephemeral_ports_churn() {
    let (_a_block, a) = hook_addr();
    let (_b_block, b) = hook_addr();
    assert_ne!(a, b);
    for addr in [a, b] {
        assert_ne!(addr.ip(), std::net::IpAddr::from([127, 0, 0, 1]), "{addr}");
    }
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let listeners: Vec<_> = (0..64)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for _ in 0..1000 {
        let c = std::net::TcpStream::connect(to).unwrap();
        drop(server.accept().unwrap());
        drop(c);
    }
    drop(listeners);
    for addr in [a, b] {
        let l = std::net::TcpListener::bind(addr);
        assert!(l.is_ok(), "{addr}: {l:?}");
    }
}

/// The rehearsal's fleet with HTTPS production and test listeners and the AppSpec's validation
/// hook pointing at `hook` (where `orchestrate deploy --hook-listen` serves it).
async fn https_fleet(hook: std::net::SocketAddr, dir: &Path) -> Localaws {
    let mut stack = orchestrate::rehearse::stack(true, 60.0).unwrap();
    for l in &mut stack.load_balancers[0].listeners {
        l.protocol = "HTTPS".into();
    }
    let cd = stack.codedeploy.as_mut().unwrap();
    cd.functions.insert(
        "validate".into(),
        stack::HookFunction {
            url: Some(format!("http://{hook}/")),
            command: None,
        },
    );
    let group = &mut cd.applications[0].deployment_groups[0];
    // One simulated minute (1 s) of termination wait instead of fifteen.
    group.termination_wait_minutes = 1;
    fleet_of(stack, dir).await
}

/// `orchestrate deploy` of v2 through [`https_fleet`], validating test traffic through the
/// hook, with `extra` flags.
async fn https_deploy(
    la: &Localaws,
    hook: std::net::SocketAddr,
    reports: &Path,
    extra: &[&str],
) -> std::process::Output {
    let test_url = la.listener_url("test").unwrap();
    assert!(test_url.starts_with("https://"), "{test_url}");
    let root = orchestrate::find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let hook = hook.to_string();
    let mut flags = vec!["--test-url", &test_url, "--hook-listen", &hook];
    flags.extend(extra);
    deploy_command(
        la,
        reports,
        &root.join("codedeploy/appspec.yaml"),
        "v2",
        &flags,
    )
    .output()
    .await
    .unwrap()
}

/// A release through HTTPS listeners (production and test), the repository's AppSpec with its
/// validation hook served by `orchestrate deploy --hook-listen`: with `--ca-file` naming
/// localaws's CA, the probe and the test-traffic validation both trust the listeners: the
/// deployment succeeds, the hook is validated over TLS, the probe counts zero errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_through_https_listeners_trusting_the_ca_file_passes_with_zero_errors() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (_block, hook) = hook_addr();
    let la = https_fleet(hook, &dir.path().join("la")).await;
    let ca = la.ca_file().unwrap().to_str().unwrap().to_owned();
    let test_url = la.listener_url("test").unwrap();
    let reports = dir.path().join("reports");
    let out = https_deploy(&la, hook, &reports, &["--ca-file", &ca]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": Succeeded"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "test traffic: 20 of 20 requests to {test_url} succeeded: hook Succeeded"
        )),
        "{stdout}"
    );
    let r = probe_report(&reports);
    assert!(r.target.starts_with("https://"), "{}", r.target);
    assert_eq!(r.errors.total, 0, "{:?}", r.incidents);
    assert_eq!(r.requests, r.ok);
    assert!(r.versions.contains_key("v2"), "{:?}", r.versions);
    let tls = r.config.tls.as_ref().expect("the report says TLS");
    assert_eq!(tls.ca_file.as_deref(), Some(ca.as_str()));
    la.shutdown().await;
}

/// Negative control, one flag removed: the same release without `--ca-file`. The probe (on the
/// system's roots) has its requests refused as `tls_cert` from the first, and the gate stops
/// the deployment with rollback: exit 1, production on blue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_the_ca_file_every_request_is_tls_cert_and_the_gate_stops_it() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (_block, hook) = hook_addr();
    let la = https_fleet(hook, &dir.path().join("la")).await;
    let reports = dir.path().join("reports");
    let out = https_deploy(&la, hook, &reports, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("gate: stop with rollback (first failed request)"),
        "{stdout}"
    );
    let r = probe_report(&reports);
    assert!(r.requests > 0);
    assert_eq!(r.ok, 0, "{}", r.summary());
    // Refused certificates; a refused handshake closes its connection, so at 500/s every
    // request is a handshake, and on a starved machine some do not finish in time.
    assert!(
        r.errors.by_kind.get("tls_cert").copied().unwrap_or(0) > 0
            && r.errors
                .by_kind
                .keys()
                .all(|k| ["tls_cert", "tls_handshake", "request_timeout"].contains(&k.as_str())),
        "{:?}",
        r.errors.by_kind
    );
    assert!(
        r.incidents[0].kinds.contains_key("tls_cert"),
        "the first failures are refused certificates: {:?}",
        r.incidents[0]
    );
    assert_production_on_blue(&la);
    la.shutdown().await;
}

/// The probe's request flags are judged as loadprobe judges them, before anything is sent:
/// exit 2 and one line naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flags_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = missing.to_str().unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let https = "https://127.0.0.1:9/";
    let http = "http://127.0.0.1:9/";
    // (flags, what the first line says); a malformed -H is refused by the command-line
    // parser, as loadprobe's own (its usage hint follows), the rest in one line.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--url", https, "--ca-file", missing], "--ca-file"),
        (
            vec!["--url", https, "--ca-file", not_pem],
            "no PEM certificate",
        ),
        (
            vec!["--url", http, "--ca-file", not_pem],
            "https:// URLs only",
        ),
        (vec!["--url", http, "--insecure"], "https:// URLs only"),
        (
            vec!["--url", https, "--insecure", "--ca-file", not_pem],
            "pick one",
        ),
        (vec!["--url", https, "--sni", "bad name!"], "--sni"),
        (
            vec!["--url", https, "-H", "Host: a", "-H", "Host: b"],
            "a second Host",
        ),
        (vec!["--ca-file", not_pem], "give --url"),
        (
            vec!["--url", https, "-H", "Connection: close"],
            "the probe sets this header itself",
        ),
        (vec!["--url", https, "-H", "no colon"], "'Name: value'"),
    ];
    for (flags, needle) in &cases {
        let parser = flags.contains(&"-H") && !needle.contains("Host");
        for command in ["refresh", "deploy"] {
            let mut c = orchestrate_at("http://127.0.0.1:9");
            c.arg(command);
            if command == "refresh" {
                c.args(["--asg", "demo-asg"]);
            } else {
                c.args(["--application", "a", "--deployment-group", "g"]);
            }
            let out = c.args(flags).output().await.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {flags:?}: {stderr}");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(first.contains(needle), "{command} {flags:?}: {stderr}");
            if !parser {
                assert_eq!(
                    stderr.trim().lines().count(),
                    1,
                    "{command} {flags:?}: one line: {stderr}"
                );
            }
            assert!(
                !stderr.contains("cannot reach"),
                "{command} {flags:?}: refused before calling AWS: {stderr}"
            );
        }
    }
    // deploy's test traffic: the TLS flags apply to an https:// test listener even when
    // production is plain HTTP, and are judged there.
    let out = orchestrate_at("http://127.0.0.1:9")
        .args(["deploy", "--application", "a", "--deployment-group", "g"])
        .args(["--url", http, "--test-url", https, "--ca-file", not_pem])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--test-url") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}
