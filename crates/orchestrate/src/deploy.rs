//! `orchestrate deploy`: a CodeDeploy blue/green release gated by live traffic.
//!
//! Renders the task definition template (`{{NAME}}` placeholders), registers it, renders the
//! AppSpec with its ARN, creates the deployment and follows it (status, lifecycle events, the
//! task sets' traffic weights) while the probe hammers the production URL. The **gate**: at the
//! first failed request `StopDeployment` with rollback, the reaction time measured. **Test
//! traffic validation**, before production sees the release: as the AppSpec's
//! `AfterAllowTestTraffic` hook (a local endpoint the hook function's URL points at, answered
//! through `PutLifecycleEventHookExecutionStatus`), or, for deployment groups that wait for
//! `ContinueDeployment`, while the deployment is `Ready` (continue, or stop with rollback). The
//! test listener is validated by the same probe as production (`loadprobe`: its request headers,
//! its TLS client and certificate checks): `TestTraffic`, 20 requests at 100/s, only 2xx
//! counting, with the production probe's headers, and its TLS options when the test URL is
//! `https://`. The task definition JSON is mapped onto the ECS SDK's input; lifecycle events and
//! task-set weights come from `GetDeploymentTarget`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_codedeploy::types::{
    AppSpecContent, DeploymentStatus, DeploymentWaitType, LifecycleEventStatus, RevisionLocation,
    RevisionLocationType,
};
use aws_sdk_ecs::types::{
    ContainerDefinition, HealthCheck, KeyValuePair, LinuxParameters, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, TransportProtocol,
};
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, RequestHeader, TlsOptions, Verdict};
use serde_json::Value;

use crate::aws::{Clients, describe_error};
use crate::gate::{Failures, Gate};

/// Why a deployment could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Bad input: a template, a placeholder, a refused request (exit 2).
    #[error("{0}")]
    Input(String),
    /// AWS stopped answering while the deployment ran (exit 1).
    #[error("{0}")]
    Aws(String),
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct Plan {
    /// CodeDeploy application.
    pub application: String,
    /// Deployment group.
    pub group: String,
    /// Deployment config [default: the group's].
    pub config: Option<String>,
    /// The rendered task definition (ECS JSON).
    pub task_definition: Value,
    /// The AppSpec with every placeholder but `{{TASK_DEFINITION_ARN}}` rendered.
    pub appspec: String,
    /// Description.
    pub description: Option<String>,
}

/// Test-traffic validation.
#[derive(Debug)]
pub struct Validation {
    /// The test listener's URL.
    pub test_url: String,
    /// Requests sent to it; every one must succeed.
    pub requests: u32,
    /// Extra request headers (`-H`), as the production probe sends them.
    pub headers: Vec<RequestHeader>,
    /// Certificate checks of an `https://` test listener (`--ca-file`, `--insecure`, `--sni`).
    pub tls: TlsOptions,
    /// Where the hook function's URL points (the AppSpec's hook invokes it); `None` validates
    /// only during a ready wait.
    pub hook: Option<tokio::net::TcpListener>,
}

/// How to follow it.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Between two status polls.
    pub poll: Duration,
    /// Give up (stop with rollback) after this long.
    pub timeout: Duration,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Deployment id.
    pub id: String,
    /// Final status (`Succeeded`, `Failed`, `Stopped`).
    pub status: String,
    /// Error code and message.
    pub error: Option<String>,
    /// The rollback deployment and its final status.
    pub rollback: Option<(String, String)>,
    /// What the gate did, if it fired.
    pub gate: Option<Gate>,
    /// What test-traffic validation found, if it ran.
    pub validation: Option<String>,
    /// The registered task definition.
    pub task_definition_arn: String,
}

impl Outcome {
    /// Whether the deployment succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == "Succeeded"
    }

    /// Whether it was rolled back and the rollback finished.
    pub fn rolled_back(&self) -> bool {
        self.rollback
            .as_ref()
            .is_some_and(|(_, s)| s == "Succeeded")
    }
}

/// Replaces every `{{NAME}}` in `template` from `vars`; a placeholder left without a value is an
/// error naming it (never a silent empty string).
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut missing = Vec::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("an unclosed {{ in the template".into());
        };
        let name = after[..end].trim();
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                missing.push(name.to_owned());
                out.push_str(&rest[start..start + 2 + end + 2]);
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        missing.sort();
        missing.dedup();
        Err(format!(
            "no value for {} (give --var NAME=VALUE)",
            missing
                .iter()
                .map(|m| format!("{{{{{m}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Renders the task definition template with `vars`, then sets `env` in its container.
pub fn render_task_definition(
    taskdef: &str,
    vars: &BTreeMap<String, String>,
    env: &[(String, String)],
) -> Result<Value, String> {
    let text = render(taskdef, vars)?;
    let mut task_definition: Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    for (k, v) in env {
        set_env(&mut task_definition, k, v)?;
    }
    Ok(task_definition)
}

/// Renders the AppSpec template with `vars`, keeping `{{TASK_DEFINITION_ARN}}` for [`run`] to fill
/// with the revision it registers.
pub fn render_appspec(appspec: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut vars = vars.clone();
    vars.insert(
        "TASK_DEFINITION_ARN".into(),
        "{{TASK_DEFINITION_ARN}}".into(),
    );
    render(appspec, &vars)
}

/// Sets (or adds) `NAME=VALUE` in the first container's environment.
pub fn set_env(task_definition: &mut Value, name: &str, value: &str) -> Result<(), String> {
    let env = task_definition
        .get_mut("containerDefinitions")
        .and_then(|c| c.get_mut(0))
        .and_then(Value::as_object_mut)
        .ok_or("the task definition has no containerDefinitions[0]")?
        .entry("environment")
        .or_insert_with(|| Value::Array(Vec::new()));
    let list = env
        .as_array_mut()
        .ok_or("containerDefinitions[0].environment is not a list")?;
    match list
        .iter_mut()
        .find(|kv| kv.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(kv) => kv["value"] = Value::from(value),
        None => list.push(serde_json::json!({ "name": name, "value": value })),
    }
    Ok(())
}

fn int(v: &Value, key: &str) -> Option<i32> {
    v.get(key)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn strings(v: &Value, key: &str) -> Option<Vec<String>> {
    v.get(key)?
        .as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn container(c: &Value) -> ContainerDefinition {
    let mut b = ContainerDefinition::builder()
        .set_name(string(c, "name"))
        .set_image(string(c, "image"))
        .set_essential(c.get("essential").and_then(Value::as_bool))
        .cpu(int(c, "cpu").unwrap_or(0))
        .set_memory(int(c, "memory"))
        .set_memory_reservation(int(c, "memoryReservation"))
        .set_stop_timeout(int(c, "stopTimeout"))
        .set_readonly_root_filesystem(c.get("readonlyRootFilesystem").and_then(Value::as_bool))
        .set_user(string(c, "user"))
        .set_entry_point(strings(c, "entryPoint"))
        .set_command(strings(c, "command"))
        .set_working_directory(string(c, "workingDirectory"));
    for p in c
        .get("portMappings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        b = b.port_mappings(
            PortMapping::builder()
                .set_container_port(int(p, "containerPort"))
                .set_host_port(int(p, "hostPort"))
                .set_protocol(string(p, "protocol").map(|s| TransportProtocol::from(s.as_str())))
                .build(),
        );
    }
    for kv in c
        .get("environment")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        b = b.environment(
            KeyValuePair::builder()
                .set_name(string(kv, "name"))
                .set_value(string(kv, "value"))
                .build(),
        );
    }
    if let Some(h) = c.get("healthCheck") {
        let command: Vec<String> = h
            .get("command")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        if let Ok(hc) = HealthCheck::builder()
            .set_command(Some(command))
            .set_interval(int(h, "interval"))
            .set_timeout(int(h, "timeout"))
            .set_retries(int(h, "retries"))
            .set_start_period(int(h, "startPeriod"))
            .build()
        {
            b = b.health_check(hc);
        }
    }
    // An init as PID 1 forwards the stop signal to an application that sets no handler.
    if let Some(init) = c
        .get("linuxParameters")
        .and_then(|l| l.get("initProcessEnabled"))
        .and_then(Value::as_bool)
    {
        b = b.linux_parameters(
            LinuxParameters::builder()
                .init_process_enabled(init)
                .build(),
        );
    }
    if let Some(l) = c.get("logConfiguration")
        && let Some(driver) = string(l, "logDriver")
    {
        let options = l.get("options").and_then(Value::as_object).map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        });
        if let Ok(lc) = LogConfiguration::builder()
            .log_driver(LogDriver::from(driver.as_str()))
            .set_options(options)
            .build()
        {
            b = b.log_configuration(lc);
        }
    }
    b.build()
}

/// Registers the task definition; returns its ARN.
async fn register(clients: &Clients, td: &Value) -> Result<String, DeployError> {
    let family = string(td, "family")
        .ok_or_else(|| DeployError::Input("the task definition has no family".into()))?;
    let mut req = clients
        .ecs
        .register_task_definition()
        .family(family)
        .set_network_mode(string(td, "networkMode").map(|m| NetworkMode::from(m.as_str())))
        .set_execution_role_arn(string(td, "executionRoleArn"))
        .set_task_role_arn(string(td, "taskRoleArn"))
        .set_cpu(string(td, "cpu"))
        .set_memory(string(td, "memory"));
    for c in td
        .get("requiresCompatibilities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        req = req.requires_compatibilities(aws_sdk_ecs::types::Compatibility::from(c));
    }
    for c in td
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req = req.container_definitions(container(c));
    }
    req.send()
        .await
        .map_err(|e| DeployError::Input(format!("RegisterTaskDefinition: {}", describe_error(&e))))?
        .task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| DeployError::Aws("no task definition ARN in the answer".into()))
}

/// What test-traffic validation sends: `requests` GETs to `url`, with the production probe's
/// headers and certificate checks.
#[derive(Debug, Clone)]
pub struct TestTraffic {
    /// The test listener's URL.
    pub url: String,
    /// Requests; every one must succeed (2xx).
    pub requests: u32,
    /// Extra request headers.
    pub headers: Vec<RequestHeader>,
    /// Certificate checks for an `https://` URL.
    pub tls: TlsOptions,
}

/// The validation's request rate: 20 requests take 0.2 s.
const VALIDATION_RATE: f64 = 100.0;

impl TestTraffic {
    /// The probe that sends it: `requests` at [`VALIDATION_RATE`] over up to 4 keep-alive
    /// connections, 10 s each, only 2xx counting as success. Not started: [`ProbeConfig::check`]
    /// judges it before a deployment begins.
    pub fn config(&self) -> Result<ProbeConfig, String> {
        let uri = self
            .url
            .parse()
            .map_err(|e| format!("invalid --test-url {:?}: {e}", self.url))?;
        let mut cfg = ProbeConfig::new(uri);
        cfg.rate = Rate::PerSecond(VALIDATION_RATE);
        cfg.duration = Duration::from_secs_f64(f64::from(self.requests.max(1)) / VALIDATION_RATE);
        cfg.interval = cfg
            .duration
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        cfg.connections = 4;
        cfg.mode = ConnectionMode::KeepAlive;
        cfg.timeout = Duration::from_secs(10);
        cfg.ok_status = "200-299"
            .parse()
            .map_err(|_| "the validation's status range".to_owned())?;
        cfg.headers.clone_from(&self.headers);
        cfg.tls = self.tls.clone();
        Ok(cfg)
    }
}

/// Sends the test traffic; every request must succeed, else the failures say why (error kinds,
/// the versions that answered).
pub async fn validate(t: &TestTraffic) -> Result<(), String> {
    let url = &t.url;
    let probe = Probe::start(t.config()?).map_err(|e| format!("{url}: {e}"))?;
    let r = probe.finish().await.map_err(|e| format!("{url}: {e}"))?;
    if r.verdict == Verdict::Pass && r.ok == r.requests {
        return Ok(());
    }
    let list = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let versions = if r.versions.is_empty() {
        String::new()
    } else {
        format!("; versions answering: {}", list(&r.versions))
    };
    Err(format!(
        "{} of {} requests to the test listener {url} failed ({}{versions})",
        r.errors.total,
        r.requests,
        list(&r.errors.by_kind)
    ))
}

/// Serves the hook function: each invocation (a Lambda-style event) is answered at once, the
/// test listener validated, and the result reported with `PutLifecycleEventHookExecutionStatus`.
fn serve_hook(
    listener: tokio::net::TcpListener,
    clients: Clients,
    traffic: TestTraffic,
    results: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    let shared = Arc::new((clients, traffic, results));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                            let id = event["DeploymentId"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            let exec = event["LifecycleEventHookExecutionId"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            tokio::spawn(async move {
                                let (clients, traffic, results) = &*shared;
                                let found = validate(traffic).await;
                                let (requests, test_url) = (traffic.requests, &traffic.url);
                                let status = if found.is_ok() {
                                    LifecycleEventStatus::Succeeded
                                } else {
                                    LifecycleEventStatus::Failed
                                };
                                let said = match &found {
                                    Ok(()) => format!(
                                        "test traffic: {requests} of {requests} requests to {test_url} succeeded: hook Succeeded"
                                    ),
                                    Err(e) => format!("test traffic: {e}: hook Failed"),
                                };
                                let put = clients
                                    .cd
                                    .put_lifecycle_event_hook_execution_status()
                                    .deployment_id(id)
                                    .lifecycle_event_hook_execution_id(exec)
                                    .status(status)
                                    .send()
                                    .await;
                                let said = match put {
                                    Ok(_) => said,
                                    Err(e) => format!(
                                        "{said}, but reporting it failed: {}",
                                        describe_error(&e)
                                    ),
                                };
                                let _ = results.send(said);
                            });
                            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"{}"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

fn finished(s: &DeploymentStatus) -> bool {
    matches!(
        s,
        DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Stopped
    )
}

/// Registers, deploys and follows; with probes, gates the deployment on the first failed request
/// of any of them.
#[expect(
    clippy::too_many_lines,
    reason = "registers, creates, follows and gates one deployment in one select loop that shares its state"
)]
pub async fn run(
    clients: &Clients,
    plan: &Plan,
    probes: &[&Probe],
    validation: Option<Validation>,
    follow: Follow,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, DeployError> {
    let cd = &clients.cd;
    cd.get_deployment_group()
        .application_name(&plan.application)
        .deployment_group_name(&plan.group)
        .send()
        .await
        .map_err(|e| DeployError::Input(describe_error(&e)))?;
    let arn = register(clients, &plan.task_definition).await?;
    log(&format!("registered {arn}"));
    let mut vars = BTreeMap::new();
    vars.insert("TASK_DEFINITION_ARN".to_owned(), arn.clone());
    let appspec =
        render(&plan.appspec, &vars).map_err(|e| DeployError::Input(format!("AppSpec: {e}")))?;
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let mut ready_validation = None;
    let hook_server = match validation {
        Some(v) => {
            let traffic = TestTraffic {
                url: v.test_url,
                requests: v.requests.max(1),
                headers: v.headers,
                tls: v.tls,
            };
            ready_validation = Some(traffic.clone());
            v.hook
                .map(|l| serve_hook(l, clients.clone(), traffic, results_tx.clone()))
        }
        None => None,
    };
    let id = cd
        .create_deployment()
        .application_name(&plan.application)
        .deployment_group_name(&plan.group)
        .set_deployment_config_name(plan.config.clone())
        .set_description(plan.description.clone())
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content(appspec).build())
                .build(),
        )
        .send()
        .await
        .map_err(|e| DeployError::Input(format!("CreateDeployment: {}", describe_error(&e))))?
        .deployment_id
        .ok_or_else(|| DeployError::Aws("no deployment id in the answer".into()))?;
    log(&format!(
        "deployment {id} of {} to {}/{}",
        arn, plan.application, plan.group
    ));
    let markers: Vec<_> = probes.iter().map(|p| p.marker()).collect();
    let mark = |label: String| {
        for m in &markers {
            m.mark(label.clone());
        }
    };
    mark(format!("deployment {id} created"));
    let mut failures = Failures::watch(probes);
    let deadline = tokio::time::Instant::now() + follow.timeout;
    let mut tick = tokio::time::interval(follow.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gate: Option<Gate> = None;
    let mut validation_said: Option<String> = None;
    let mut seen_events: BTreeMap<String, String> = BTreeMap::new();
    let mut last_status = String::new();
    let mut last_weights = String::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let target_id = ecs_target_id(cd, &id).await.unwrap_or_default();
    let outcome = loop {
        tokio::select! {
            _ = tick.tick() => {
                let d = cd
                    .get_deployment()
                    .deployment_id(&id)
                    .send()
                    .await
                    .map_err(|e| DeployError::Aws(describe_error(&e)))?
                    .deployment_info
                    .ok_or_else(|| DeployError::Aws(format!("deployment {id} vanished")))?;
                let status = d.status().map(|s| s.as_str().to_owned()).unwrap_or_default();
                if status != last_status {
                    log(&format!("deploy {status}"));
                    mark(format!("deployment {status}"));
                    last_status.clone_from(&status);
                }
                // Lifecycle events and the task sets' weights, from the deployment target.
                if let Ok(t) = cd
                    .get_deployment_target()
                    .deployment_id(&id)
                    .target_id(&target_id)
                    .send()
                    .await
                    && let Some(ecs) = t.deployment_target.and_then(|t| t.ecs_target)
                {
                    for e in ecs.lifecycle_events() {
                        let name = e.lifecycle_event_name().unwrap_or("").to_owned();
                        let st = e.status().map(|s| s.as_str().to_owned()).unwrap_or_default();
                        if seen_events.get(&name) != Some(&st) && st != "Pending" {
                            let why = e
                                .diagnostics()
                                .and_then(|d| d.message())
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default();
                            log(&format!("lifecycle {name} {st}{why}"));
                            mark(format!("{name} {st}"));
                            seen_events.insert(name, st);
                        }
                    }
                    let weights = ecs
                        .task_sets_info()
                        .iter()
                        .map(|s| format!(
                            "{} {}%",
                            s.task_set_label().map_or("?", |l| l.as_str()),
                            s.traffic_weight()
                        ))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if !weights.is_empty() && weights != last_weights {
                        log(&format!("traffic {weights}"));
                        mark(format!("traffic {weights}"));
                        last_weights = weights;
                    }
                }
                // Test traffic validation during a ready wait.
                if d.status() == Some(&DeploymentStatus::Ready)
                    && let Some(traffic) = ready_validation.take()
                {
                    let found = validate(&traffic).await;
                    let (url, n) = (&traffic.url, traffic.requests);
                    match found {
                        Ok(()) => {
                            let said = format!("test traffic: {n} of {n} requests to {url} succeeded: ContinueDeployment");
                            log(&said);
                            validation_said = Some(said);
                            cd.continue_deployment()
                                .deployment_id(&id)
                                .deployment_wait_type(DeploymentWaitType::ReadyWait)
                                .send()
                                .await
                                .map_err(|e| DeployError::Aws(describe_error(&e)))?;
                        }
                        Err(e) => {
                            let said = format!("test traffic: {e}: StopDeployment with rollback");
                            log(&said);
                            validation_said = Some(said);
                            stop(clients, &id, "test traffic failed", None, log).await;
                        }
                    }
                }
                if d.status().is_some_and(finished) {
                    let rollback = d
                        .rollback_info()
                        .and_then(|r| r.rollback_deployment_id())
                        .map(str::to_owned);
                    break Outcome {
                        id: id.clone(),
                        status,
                        error: d.error_information().map(|e| {
                            format!(
                                "{}: {}",
                                e.code().map_or("", |c| c.as_str()),
                                e.message().unwrap_or("")
                            )
                        }),
                        rollback: rollback.map(|r| (r, String::new())),
                        gate: gate.clone(),
                        validation: validation_said.clone(),
                        task_definition_arn: arn.clone(),
                    };
                }
            }
            Some(said) = results.recv() => {
                log(&said);
                mark(said.clone());
                validation_said = Some(said);
            }
            f = failures.next(), if gate.is_none() => {
                let why = f.describe(probes.len());
                let g = stop(clients, &id, &why, f.at, log).await;
                mark(format!("gate: StopDeployment with rollback{}",
                    g.reaction.map(|r| format!(" ({} ms after the first failed request)", r.as_millis())).unwrap_or_default()));
                gate = Some(g);
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                log("interrupted: stopping the deployment with rollback and waiting for AWS to report it");
                if gate.is_none() {
                    gate = Some(stop(clients, &id, "interrupted", None, log).await);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let _ = stop(clients, &id, "timed out", None, log).await;
                if let Some(h) = hook_server { h.abort(); }
                return Err(DeployError::Aws(format!(
                    "deployment {id} did not finish within {}; stop with rollback requested",
                    humantime::format_duration(follow.timeout)
                )));
            }
        }
    };
    let mut outcome = outcome;
    // Follow the rollback deployment to its end.
    if let Some((rid, _)) = outcome.rollback.clone() {
        log(&format!("rollback deployment {rid}"));
        let status = loop {
            let d = cd.get_deployment().deployment_id(&rid).send().await;
            let status = d
                .ok()
                .and_then(|d| d.deployment_info)
                .and_then(|d| d.status)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            if matches!(status.as_str(), "Succeeded" | "Failed" | "Stopped")
                || tokio::time::Instant::now() >= deadline
            {
                break status;
            }
            tokio::time::sleep(follow.poll).await;
        };
        log(&format!("rollback deployment {rid}: {status}"));
        mark(format!("rollback {status}"));
        outcome.rollback = Some((rid, status));
    }
    if let Some(h) = hook_server {
        h.abort();
    }
    Ok(outcome)
}

async fn ecs_target_id(cd: &aws_sdk_codedeploy::Client, id: &str) -> Option<String> {
    cd.list_deployment_targets()
        .deployment_id(id)
        .send()
        .await
        .ok()?
        .target_ids()
        .first()
        .cloned()
}

async fn stop(
    clients: &Clients,
    id: &str,
    why: &str,
    first_failure: Option<SystemTime>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Gate {
    let called_at = SystemTime::now();
    match clients
        .cd
        .stop_deployment()
        .deployment_id(id)
        .auto_rollback_enabled(true)
        .send()
        .await
    {
        Ok(_) => log(&format!(
            "gate ({why}): StopDeployment with rollback requested"
        )),
        Err(e) => log(&format!(
            "gate ({why}): StopDeployment refused: {}",
            describe_error(&e)
        )),
    }
    Gate::new(why, first_failure, called_at, "stop with rollback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_every_placeholder_or_names_the_missing_ones() {
        let vars: BTreeMap<String, String> = [("IMAGE".to_owned(), "server".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(
            render("a {{IMAGE}} b {{ IMAGE }}", &vars).unwrap(),
            "a server b server"
        );
        let e = render("{{IMAGE}} {{APP_VERSION}} {{X}} {{X}}", &vars).unwrap_err();
        assert!(e.contains("{{APP_VERSION}}, {{X}}"), "{e}");
        assert!(render("{{IMAGE", &vars).is_err());
    }

    #[test]
    fn container_keeps_the_init_process_setting() {
        let c = container(&serde_json::json!({
            "name": "web", "image": "server",
            "linuxParameters": {"initProcessEnabled": true}
        }));
        assert_eq!(
            c.linux_parameters().and_then(|l| l.init_process_enabled()),
            Some(true)
        );
        let c = container(&serde_json::json!({"name": "web", "image": "server"}));
        assert!(c.linux_parameters().is_none());
    }

    #[test]
    fn container_keeps_what_runs_where_and_as_whom() {
        let c = container(&serde_json::json!({
            "name": "web", "image": "server",
            "entryPoint": ["/server"], "command": ["serve"],
            "workingDirectory": "/srv", "user": "65532:65532"
        }));
        assert_eq!(c.entry_point(), ["/server"]);
        assert_eq!(c.command(), ["serve"]);
        assert_eq!(c.working_directory(), Some("/srv"));
        assert_eq!(c.user(), Some("65532:65532"));
        let c = container(&serde_json::json!({"name": "web", "image": "server"}));
        assert!(c.entry_point().is_empty() && c.command().is_empty());
        assert_eq!(c.working_directory(), None);
    }

    #[test]
    fn set_env_overrides_or_adds() {
        let mut td = serde_json::json!({"containerDefinitions": [{"environment": [{"name": "A", "value": "1"}]}]});
        set_env(&mut td, "A", "2").unwrap();
        set_env(&mut td, "B", "3").unwrap();
        assert_eq!(
            td["containerDefinitions"][0]["environment"],
            serde_json::json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
        );
        assert!(set_env(&mut serde_json::json!({}), "A", "1").is_err());
    }
}
