//! `orchestrate refresh`: an instance refresh gated by live traffic.
//!
//! Starts (or follows) an Auto Scaling instance refresh, follows it (status, percentage,
//! instances to update, scaling activities) and puts each change on the probe's timeline while
//! the probe hammers the load balancer. The **gate**: at the first failed request (or SLO
//! breach) it asks AWS to roll the refresh back, and cancels it where AWS refuses a rollback
//! (`$Latest`/`$Default`, no desired configuration); the time from the first failed request to
//! that call is measured and reported. Ctrl-C does the same safe thing without asking.
//!
//! Every probe's live state is watched (`Failures`: one watcher task per probe feeding one
//! channel), so the rehearsal's slow-request probe gates as the production stream does.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefreshStatus, LaunchTemplateSpecification, RefreshPreferences,
};
use loadprobe::{Probe, Report};

use crate::aws::{Clients, describe_error};
use crate::gate::{Failures, Gate};

/// Why a refresh could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Bad input: an unknown group, a refused request (exit 2).
    #[error("{0}")]
    Input(String),
    /// AWS stopped answering while the refresh ran (exit 1).
    #[error("{0}")]
    Aws(String),
}

/// What to refresh.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Auto Scaling group.
    pub group: String,
    /// Launch template of the desired configuration (default: the group's).
    pub launch_template: Option<String>,
    /// Its version; without one the refresh has no desired configuration.
    pub version: Option<String>,
    /// Preferences.
    pub prefs: RefreshPreferences,
    /// Follow the refresh already running instead of starting one.
    pub follow: bool,
}

/// How to follow it.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Between two `DescribeInstanceRefreshes` calls.
    pub poll: Duration,
    /// Give up (cancel) after this long.
    pub timeout: Duration,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Refresh id.
    pub id: String,
    /// Final status (`Successful`, `RollbackSuccessful`, ...).
    pub status: String,
    /// AWS's status reason.
    pub reason: Option<String>,
    /// What the gate did, if it fired.
    pub gate: Option<Gate>,
}

impl Outcome {
    /// Whether the refresh itself succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == "Successful"
    }
}

fn terminal(s: &InstanceRefreshStatus) -> bool {
    matches!(
        s,
        InstanceRefreshStatus::Successful
            | InstanceRefreshStatus::Failed
            | InstanceRefreshStatus::Cancelled
            | InstanceRefreshStatus::RollbackSuccessful
            | InstanceRefreshStatus::RollbackFailed
    )
}

/// Starts (or finds) the refresh and follows it to its end; with probes, gates it on the first
/// failed request of any of them (the first probe is the production stream; others, such as
/// slow requests, watch the same listener).
#[expect(
    clippy::too_many_lines,
    reason = "the follow loop and its gate share the refresh's state across one select loop"
)]
pub async fn run(
    clients: &Clients,
    plan: &Plan,
    probes: &[&Probe],
    follow: Follow,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, RefreshError> {
    let asg = &clients.asg;
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&plan.group)
        .send()
        .await
        .map_err(|e| RefreshError::Input(describe_error(&e)))?;
    let Some(group) = groups.auto_scaling_groups().first() else {
        return Err(RefreshError::Input(format!(
            "no auto scaling group named {:?}",
            plan.group
        )));
    };
    // Activities from before this command are history: only new ones are shown and marked.
    let mut seen = BTreeSet::new();
    if let Ok(acts) = asg
        .describe_scaling_activities()
        .auto_scaling_group_name(&plan.group)
        .max_records(100)
        .send()
        .await
    {
        seen.extend(
            acts.activities()
                .iter()
                .filter_map(|a| a.activity_id().map(str::to_owned)),
        );
    }
    let id = if plan.follow {
        let refreshes = asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(&plan.group)
            .send()
            .await
            .map_err(|e| RefreshError::Input(describe_error(&e)))?;
        refreshes
            .instance_refreshes()
            .iter()
            .find(|r| r.status().is_some_and(|s| !terminal(s)))
            .and_then(|r| r.instance_refresh_id().map(str::to_owned))
            .ok_or_else(|| {
                RefreshError::Input(format!(
                    "no instance refresh is running on {}: nothing to follow",
                    plan.group
                ))
            })?
    } else {
        let mut req = asg
            .start_instance_refresh()
            .auto_scaling_group_name(&plan.group)
            .preferences(plan.prefs.clone());
        if let Some(version) = &plan.version {
            let lt = plan
                .launch_template
                .clone()
                .or_else(|| {
                    group
                        .launch_template()
                        .and_then(|l| l.launch_template_name())
                        .map(str::to_owned)
                })
                .ok_or_else(|| {
                    RefreshError::Input(format!(
                        "group {} has no launch template: give --launch-template",
                        plan.group
                    ))
                })?;
            req = req.desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_name(lt)
                            .version(version)
                            .build(),
                    )
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| RefreshError::Input(describe_error(&e)))?
            .instance_refresh_id
            .ok_or_else(|| RefreshError::Aws("no refresh id in the answer".into()))?
    };
    log(&format!("instance refresh {id} on {}", plan.group));
    let markers: Vec<_> = probes.iter().map(|p| p.marker()).collect();
    let mark = |label: String| {
        for m in &markers {
            m.mark(label.clone());
        }
    };
    mark(format!("refresh {id} started"));

    let mut failures = Failures::watch(probes);
    let deadline = tokio::time::Instant::now() + follow.timeout;
    let mut tick = tokio::time::interval(follow.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    let mut gate: Option<Gate> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let out = asg
                    .describe_instance_refreshes()
                    .auto_scaling_group_name(&plan.group)
                    .instance_refresh_ids(&id)
                    .send()
                    .await
                    .map_err(|e| RefreshError::Aws(describe_error(&e)))?;
                let Some(r) = out.instance_refreshes().first() else {
                    return Err(RefreshError::Aws(format!("instance refresh {id} vanished")));
                };
                let status = r.status().map(|s| s.as_str().to_owned()).unwrap_or_default();
                let line = format!(
                    "{status} {}% complete, {} to update{}",
                    r.percentage_complete().unwrap_or(0),
                    r.instances_to_update().unwrap_or(0),
                    r.status_reason().map(|s| format!(": {s}")).unwrap_or_default()
                );
                if line != last {
                    log(&format!("refresh {line}"));
                    mark(format!("refresh {line}"));
                    last = line;
                }
                if let Ok(acts) = asg
                    .describe_scaling_activities()
                    .auto_scaling_group_name(&plan.group)
                    .max_records(20)
                    .send()
                    .await
                {
                    let mut new: Vec<_> = acts
                        .activities()
                        .iter()
                        .filter(|a| a.activity_id().is_some_and(|id| !seen.contains(id)))
                        .collect();
                    new.reverse();
                    for a in new {
                        if let Some(aid) = a.activity_id() {
                            seen.insert(aid.to_owned());
                        }
                        let d = a.description().unwrap_or("");
                        log(&format!("activity: {d}"));
                        mark(format!("activity: {d}"));
                    }
                }
                if r.status().is_some_and(terminal) {
                    return Ok(Outcome {
                        id,
                        status,
                        reason: r.status_reason().map(str::to_owned),
                        gate,
                    });
                }
            }
            f = failures.next(), if gate.is_none() => {
                let why = f.describe(probes.len());
                let g = stop_refresh(clients, plan, &why, f.at, log).await;
                mark(format!("gate: {} requested after the first failed request{}", g.action,
                    g.reaction.map(|r| format!(" ({} ms later)", r.as_millis())).unwrap_or_default()));
                gate = Some(g);
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                log("interrupted: stopping the refresh safely (rollback, else cancel) and waiting for AWS to report it");
                if gate.is_none() {
                    let g = stop_refresh(clients, plan, "interrupted", None, log).await;
                    mark(format!("interrupted: {} requested", g.action));
                    gate = Some(g);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let _ = stop_refresh(clients, plan, "timed out", None, log).await;
                return Err(RefreshError::Aws(format!(
                    "instance refresh {id} did not finish within {}; cancel/rollback requested",
                    humantime::format_duration(follow.timeout)
                )));
            }
        }
    }
}

/// Rolls the refresh back, or cancels it where AWS refuses a rollback.
async fn stop_refresh(
    clients: &Clients,
    plan: &Plan,
    why: &str,
    first_failure: Option<SystemTime>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Gate {
    let called_at = SystemTime::now();
    let rollback = clients
        .asg
        .rollback_instance_refresh()
        .auto_scaling_group_name(&plan.group)
        .send()
        .await;
    let action = match rollback {
        Ok(_) => {
            log(&format!("gate ({why}): rollback requested"));
            "rollback"
        }
        Err(e) => {
            log(&format!(
                "gate ({why}): rollback refused ({}); cancelling instead",
                describe_error(&e)
            ));
            if let Err(e) = clients
                .asg
                .cancel_instance_refresh()
                .auto_scaling_group_name(&plan.group)
                .send()
                .await
            {
                log(&format!("cancel failed too: {}", describe_error(&e)));
            }
            "cancel"
        }
    };
    Gate::new(why, first_failure, called_at, action)
}

/// Writes a probe report as JSON, Markdown and HTML into `dir` (`probe.json`, ...).
pub fn write_reports(report: &Report, dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let json = dir.join("probe.json");
    report.write_json(std::io::BufWriter::new(std::fs::File::create(&json)?))?;
    written.push(json);
    let md = dir.join("probe.md");
    report.write_markdown(std::io::BufWriter::new(std::fs::File::create(&md)?))?;
    written.push(md);
    let html = dir.join("probe.html");
    report.write_html(std::io::BufWriter::new(std::fs::File::create(&html)?))?;
    written.push(html);
    Ok(written)
}
