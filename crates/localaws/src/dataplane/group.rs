//! A task of several containers as one [`RunningTask`], stopped and ended as the ECS agent ends
//! one:
//! - an **essential** container that exits, for any reason, stops the task: every other
//!   container gets its stop signal and, after its own `stopTimeout`, SIGKILL; a container that
//!   is not essential may exit and the task runs on;
//! - stopping the task stops every container at once, each within its own `stopTimeout`;
//! - the task's endpoint is the container the load balancer reaches; the task's exit is the
//!   essential container's that ended it (or, when the task was stopped, the serving
//!   container's), each container's own exit staying with its handle.
//!
//! Where ECS is richer: `dependsOn` (start and stop order by condition) is not modelled here;
//! the containers start one after another in the task definition's order and stop together.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::runtime::{self, BoxFuture, RunningTask, StopSignal, TaskExit, exit_of};

/// One container of a task.
#[derive(Debug)]
pub(super) struct Member {
    /// Its handle.
    pub(super) handle: Arc<dyn RunningTask>,
    /// Its exit stops the task.
    pub(super) essential: bool,
    /// Between its stop signal and SIGKILL.
    pub(super) stop_timeout: Duration,
}

/// The containers of one task.
#[derive(Debug)]
pub(super) struct Group {
    id: String,
    serving: Arc<dyn RunningTask>,
    members: Arc<Vec<Member>>,
    /// Asked to stop (the stop signal went to the task).
    stop: CancellationToken,
    /// Set when an essential container has exited.
    ending: CancellationToken,
    exit: watch::Receiver<Option<TaskExit>>,
}

impl Group {
    /// Watches `members` (the container at `serving` is the one the load balancer reaches) until
    /// an essential one exits or the task is stopped, then stops the rest. `None` when
    /// `serving` names no member.
    pub(super) fn start(id: String, members: Vec<Member>, serving: usize) -> Option<Self> {
        let handle = Arc::clone(&members.get(serving)?.handle);
        let members = Arc::new(members);
        let stop = CancellationToken::new();
        let ending = CancellationToken::new();
        let (tx, rx) = watch::channel(None);
        tokio::spawn(supervise(
            Arc::clone(&members),
            serving,
            (stop.clone(), ending.clone()),
            tx,
        ));
        Some(Self {
            id,
            serving: handle,
            members,
            stop,
            ending,
            exit: rx,
        })
    }
}

async fn supervise(
    members: Arc<Vec<Member>>,
    serving: usize,
    (stop, ending): (CancellationToken, CancellationToken),
    tx: watch::Sender<Option<TaskExit>>,
) {
    let essential: Vec<BoxFuture<'_, TaskExit>> = members
        .iter()
        .filter(|m| m.essential)
        .map(|m| m.handle.wait())
        .collect();
    let first_essential_exit = async move {
        if essential.is_empty() {
            std::future::pending::<TaskExit>().await
        } else {
            futures_util::future::select_all(essential).await.0
        }
    };
    let cause = tokio::select! {
        exit = first_essential_exit => Some(exit),
        () = stop.cancelled() => None,
    };
    if cause.is_some() {
        ending.cancel();
    }
    futures_util::future::join_all(
        members
            .iter()
            .map(|m| runtime::stop(m.handle.as_ref(), m.stop_timeout)),
    )
    .await;
    let exit = cause
        .or_else(|| members.get(serving).and_then(|m| m.handle.exit()))
        .unwrap_or(TaskExit::Code(-1));
    let _ = tx.send(Some(exit));
}

impl RunningTask for Group {
    fn id(&self) -> &str {
        &self.id
    }

    fn endpoint(&self) -> std::net::SocketAddr {
        self.serving.endpoint()
    }

    fn signal(&self, signal: StopSignal) {
        // The supervisor stops every container, each within its own stop timeout.
        self.stop.cancel();
        if signal == StopSignal::Kill {
            for m in self.members.iter() {
                m.handle.signal(StopSignal::Kill);
            }
        }
    }

    fn exit(&self) -> Option<TaskExit> {
        *self.exit.borrow()
    }

    fn wait(&self) -> BoxFuture<'_, TaskExit> {
        exit_of(&self.exit)
    }

    fn ending(&self) -> bool {
        self.ending.is_cancelled()
    }
}
