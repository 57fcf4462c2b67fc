//! Paths of the repository and fixtures, and a scratch configuration builder.

use std::path::{Path, PathBuf};

use orchestrate::preflight::{self, AppSpec, Hazard, Inputs, Severity, TaskDefinition};
use tfstack::terraform::Config;

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// A fixture directory under tests/fixtures.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The repository's own inputs, as `orchestrate preflight` reads them by default.
pub(crate) fn project_inputs() -> Inputs {
    let root = repo();
    Inputs {
        terraform: Some(Config::load(&root.join("terraform/envs/dev")).unwrap()),
        task_definition: Some(
            TaskDefinition::from_file(&root.join("codedeploy/taskdef.template.json")).unwrap(),
        ),
        appspec: Some(AppSpec::from_file(&root.join("codedeploy/appspec.yaml")).unwrap()),
    }
}

/// A scratch setup: Terraform files, a task definition, an AppSpec, each optional.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Setup<'a> {
    pub(crate) tf: Option<&'a str>,
    pub(crate) taskdef: Option<&'a str>,
    pub(crate) appspec: Option<&'a str>,
}

impl Setup<'_> {
    /// Writes the files into a temporary directory and runs every check.
    pub(crate) fn check(&self) -> Vec<Hazard> {
        let dir = tempfile::tempdir().unwrap();
        let terraform = self.tf.map(|tf| {
            std::fs::write(dir.path().join("main.tf"), tf).unwrap();
            Config::load(dir.path()).unwrap()
        });
        let task_definition = self
            .taskdef
            .map(|t| TaskDefinition::parse(t, &dir.path().join("taskdef.json")).unwrap());
        let appspec = self
            .appspec
            .map(|a| AppSpec::parse(a, &dir.path().join("appspec.yaml")).unwrap());
        preflight::check(&Inputs {
            terraform,
            task_definition,
            appspec,
        })
    }
}

/// The hazards with this id.
pub(crate) fn with_id<'a>(hazards: &'a [Hazard], id: &str) -> Vec<&'a Hazard> {
    hazards.iter().filter(|h| h.id == id).collect()
}

/// The error-level hazards.
pub(crate) fn errors(hazards: &[Hazard]) -> Vec<&Hazard> {
    hazards
        .iter()
        .filter(|h| h.severity == Severity::Error)
        .collect()
}

/// Every hazard, one block each, for assertion messages.
pub(crate) fn show(hazards: &[Hazard]) -> String {
    hazards.iter().map(ToString::to_string).collect()
}

/// How many fleets may run at once in this test binary. A fleet (an in-process `localaws`, or an
/// `orchestrate rehearse` with its own) spends most of its time waiting on the scaled clock, so
/// two side by side finish sooner; each data plane claims its own block of instance addresses, so
/// they never share an address or a port. Two, not localaws's three: most fleets here are whole
/// rehearsals probing at 1,000 req/s through a debug build, and three of them kept both cores
/// busy; under the flake hunt's CPU hog their requests timed out. `FLEET_SLOTS` sets it
/// (`FLEET_SLOTS=1` runs them one at a time).
pub(crate) fn fleet_slots() -> u32 {
    static SLOTS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::env::var("FLEET_SLOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=16).contains(n))
            .unwrap_or(2)
    })
}

/// A share of the machine for one fleet, held until dropped.
pub(crate) type Slot = tokio::sync::SemaphorePermit<'static>;

/// The whole machine, for a rehearsal whose tasks are containers: the engine, its port proxies
/// and the containers cost far more than a slot's share, outside this process. Beside another
/// rehearsal under the flake hunt's CPU hog, the dev environment's container rehearsal stalled
/// 2–3 s, every request a `request_timeout` (run 1 of the hunts on `c05dc4b` and `d4c03fd`);
/// alone under the same hog it passed 4 runs of 4.
pub(crate) async fn exclusive() -> Slot {
    fleets()
        .acquire_many(fleet_slots())
        .await
        .expect("the fleet semaphore is never closed")
}

fn fleets() -> &'static tokio::sync::Semaphore {
    static FLEETS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    FLEETS.get_or_init(|| tokio::sync::Semaphore::new(fleet_slots() as usize))
}

/// One fleet's share: waits while [`fleet_slots`] fleets run.
pub(crate) async fn slot() -> Slot {
    fleets()
        .acquire()
        .await
        .expect("the fleet semaphore is never closed")
}

/// A temporary directory for a rehearsal's reports that outlives a failing test: when the test
/// panics the directory stays and its path is printed, so the report of the run that failed can
/// be read (two hunts lost a flake's report with its temporary directory).
pub(crate) struct ReportDir(Option<tempfile::TempDir>);

impl ReportDir {
    pub(crate) fn new() -> ReportDir {
        ReportDir(Some(tempfile::tempdir().unwrap()))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.as_ref().map(tempfile::TempDir::path).unwrap()
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "the failed run's reports are kept in {}",
                dir.keep().display()
            );
        }
    }
}

/// A report directory stays when its test panics, and goes when it passes.
#[test]
fn a_report_dir_outlives_only_a_failing_test() {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing = std::thread::spawn(move || {
        let dir = ReportDir::new();
        std::fs::write(dir.path().join("index.html"), "report").unwrap();
        tx.send(dir.path().to_path_buf()).unwrap();
        panic!("a failing rehearsal");
    });
    assert!(failing.join().is_err());
    let kept = rx.recv().unwrap();
    assert!(kept.join("index.html").exists(), "{}", kept.display());
    std::fs::remove_dir_all(&kept).unwrap();
    let passing = ReportDir::new();
    let gone = passing.path().to_path_buf();
    drop(passing);
    assert!(!gone.exists());
}
