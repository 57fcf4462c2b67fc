//! Amazon ECS (awsJson1_1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.*`).

use serde_json::{Map, Value, json};

use super::json::{Input, time};
use super::{ApiError, unsupported};
use crate::control::ecs::{InstanceStatus, ServiceUpdate, TaskDefinitionRevision, TaskStatus};
use crate::control::rolling::{
    DeploymentRole, SERVICE_DEPLOYMENT_STATUSES, ServiceDeployment, ServiceDeploymentStatus,
};
use crate::control::{Control, ControlError, Service, State, Task};
use stack::{CircuitBreakerConfig, TaskDefinition};

/// The `X-Amz-Target` service name.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

fn err(e: ControlError) -> ApiError {
    ApiError::from_control(e, "InvalidParameterException", |kind, name| match kind {
        "cluster" => (
            "ClusterNotFoundException".into(),
            format!("Cluster not found: {name}"),
        ),
        "service" => (
            "ServiceNotFoundException".into(),
            format!("Service not found: {name}"),
        ),
        "task definition" => (
            "ClientException".into(),
            format!("Unable to describe task definition {name}."),
        ),
        "service deployment" => (
            "ServiceDeploymentNotFoundException".into(),
            format!("The service deployment {name} does not exist."),
        ),
        _ => (
            "InvalidParameterException".into(),
            format!("{kind} {name} not found"),
        ),
    })
}

fn cluster(c: &Control, input: &Input) -> Result<(), ApiError> {
    let name = input.str("cluster")?;
    c.read(|st| st.check_cluster(name)).map_err(err)
}

/// Handles one operation: one function per operation.
pub fn handle(c: &Control, operation: &str, input: &Input) -> Result<Value, ApiError> {
    match operation {
        "RegisterTaskDefinition" => register_task_definition(c, input),
        "DescribeTaskDefinition" => describe_task_definition(c, input),
        "DescribeClusters" => describe_clusters(c, input),
        "DescribeServices" => describe_services(c, input),
        "DescribeTaskSets" => describe_task_sets(c, input),
        "CreateTaskSet" | "UpdateTaskSet" | "DeleteTaskSet" | "UpdateServicePrimaryTaskSet" => {
            external_task_sets(c, input, operation)
        }
        "UpdateService" => update_service(c, input),
        "ListTasks" => list_tasks(c, input),
        "DescribeTasks" => describe_tasks(c, input),
        "ListContainerInstances" => list_container_instances(c, input),
        "DescribeContainerInstances" => describe_container_instances(c, input),
        "UpdateContainerInstancesState" => update_container_instances_state(c, input),
        "ListServiceDeployments" => list_service_deployments(c, input),
        "DescribeServiceDeployments" => describe_service_deployments(c, input),
        "StopServiceDeployment" => stop_service_deployment(c, input),
        other => Err(unsupported("ECS", other, "UnknownOperationException")),
    }
}

fn register_task_definition(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let raw = Value::Object(input.0.clone());
    let definition = task_definition_from_json(&raw)?;
    let rev = c.register_task_definition(definition, raw).map_err(err)?;
    Ok(json!({ "taskDefinition": task_definition_json(&rev) }))
}

fn describe_task_definition(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let r = input.req("taskDefinition")?;
    let rev = c.read(|st| st.task_definition(r).cloned()).map_err(err)?;
    Ok(json!({ "taskDefinition": task_definition_json(&rev), "tags": [] }))
}

fn describe_clusters(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let names = input.strings("clusters")?;
    let names = if names.is_empty() {
        vec!["default".to_owned()]
    } else {
        names
    };
    Ok(c.read(|st| {
        let mut clusters = Vec::new();
        let mut failures = Vec::new();
        for n in &names {
            if st.check_cluster(Some(n)).is_ok() {
                clusters.push(cluster_json(st));
            } else {
                failures.push(json!({ "arn": n, "reason": "MISSING" }));
            }
        }
        json!({ "clusters": clusters, "failures": failures })
    }))
}

fn describe_services(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let names = required(input, "services")?;
    Ok(c.read(|st| {
        described("services", &names, |n| {
            st.service(n).ok().map(|s| service_json(st, s))
        })
    }))
}

fn describe_task_sets(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let name = input.req("service")?;
    let wanted = input.strings("taskSets")?;
    c.read(|st| {
        let s = st.service(name).map_err(err)?;
        let sets: Vec<Value> = s
            .task_sets
            .iter()
            .filter(|t| wanted.is_empty() || wanted.iter().any(|w| *w == t.id || *w == t.arn))
            .map(|t| task_set_json(st, s, t))
            .collect();
        let failures: Vec<Value> = wanted
            .iter()
            .filter(|w| !s.task_sets.iter().any(|t| t.id == **w || t.arn == **w))
            .map(|w| json!({ "arn": w, "reason": "MISSING" }))
            .collect();
        Ok(json!({ "taskSets": sets, "failures": failures }))
    })
}

/// The task set operations, which ECS accepts only for the `EXTERNAL` deployment controller (a
/// `CODE_DEPLOY` service's task sets are CodeDeploy's).
fn external_task_sets(c: &Control, input: &Input, operation: &str) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let name = input.req("service")?;
    let controller = c
        .read(|st| st.service(name).map(|s| s.controller.clone()))
        .map_err(err)?;
    Err(ApiError::new(
        "InvalidParameterException",
        format!(
            "{operation} is only supported for services with the EXTERNAL deployment controller; {name} uses {controller}"
        ),
    ))
}

fn update_service(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let name = input.req("service")?;
    let config = input.object("deploymentConfiguration")?;
    let update = ServiceUpdate {
        desired: input.u32("desiredCount", 0, 1000)?,
        task_definition: input.str("taskDefinition")?.map(str::to_owned),
        min_healthy: match &config {
            Some(d) => d.u32("minimumHealthyPercent", 0, 100)?,
            None => None,
        },
        max_percent: match &config {
            Some(d) => d.u32("maximumPercent", 100, 200)?,
            None => None,
        },
        grace: input.u32("healthCheckGracePeriodSeconds", 0, 2_147_483_647)?,
        circuit_breaker: match &config {
            Some(d) => circuit_breaker(d)?,
            None => None,
        },
        force_new_deployment: input.bool("forceNewDeployment")?.unwrap_or(false),
    };
    let svc = c.update_service(name, &update).map_err(err)?;
    Ok(c.read(|st| json!({ "service": service_json(st, &svc) })))
}

/// `deploymentCircuitBreaker { enable, rollback }`, both required.
fn circuit_breaker(config: &Input) -> Result<Option<CircuitBreakerConfig>, ApiError> {
    let Some(cb) = config.object("deploymentCircuitBreaker")? else {
        return Ok(None);
    };
    let required = |name: &str| {
        cb.bool(name)?.ok_or_else(|| {
            ApiError::new(
                "InvalidParameterException",
                format!("deploymentCircuitBreaker.{name} is required"),
            )
        })
    };
    Ok(Some(CircuitBreakerConfig {
        enable: required("enable")?,
        rollback: required("rollback")?,
    }))
}

fn list_tasks(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let service = input.str("serviceName")?;
    let instance = input.str("containerInstance")?;
    let family = input.str("family")?;
    let desired = input.str("desiredStatus")?.unwrap_or("RUNNING");
    if !matches!(desired, "RUNNING" | "PENDING" | "STOPPED") {
        return Err(ApiError::new(
            "InvalidParameterException",
            format!("invalid desiredStatus {desired:?}: expected RUNNING, PENDING or STOPPED"),
        ));
    }
    if let Some(s) = service {
        c.read(|st| st.service(s).map(|_| ())).map_err(err)?;
    }
    let arns: Vec<String> = c.read(|st| {
        let ec2 = instance.and_then(|i| st.container_instance(i).map(|ci| ci.ec2_instance.clone()));
        st.tasks
            .values()
            .filter(|t| {
                service.is_none_or(|s| {
                    t.service.as_deref() == Some(s)
                        || st
                            .service(s)
                            .is_ok_and(|svc| t.service.as_deref() == Some(svc.name.as_str()))
                })
            })
            .filter(|t| instance.is_none() || ec2.as_deref() == Some(t.instance.as_str()))
            .filter(|t| family.is_none_or(|f| t.task_definition.0 == f))
            .filter(|t| match desired {
                "STOPPED" => t.desired_status == TaskStatus::Stopped,
                "PENDING" => t.last_status == TaskStatus::Provisioning,
                _ => t.desired_status == TaskStatus::Running,
            })
            .map(|t| t.arn.clone())
            .collect()
    });
    listed("taskArns", &arns, input)
}

fn describe_tasks(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let refs = required(input, "tasks")?;
    Ok(c.read(|st| described("tasks", &refs, |r| st.task(r).map(|t| task_json(st, t)))))
}

fn list_container_instances(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let status = input.str("status")?;
    if let Some(s) = status
        && !matches!(
            s,
            "ACTIVE" | "DRAINING" | "REGISTERING" | "DEREGISTERING" | "REGISTRATION_FAILED"
        )
    {
        return Err(ApiError::new(
            "InvalidParameterException",
            format!("invalid status {s:?}"),
        ));
    }
    let arns: Vec<String> = c.read(|st| {
        st.container_instances
            .values()
            .filter(|ci| match status {
                Some(s) => ci.status.as_str() == s,
                None => ci.status != InstanceStatus::Inactive,
            })
            .map(|ci| ci.arn.clone())
            .collect()
    });
    listed("containerInstanceArns", &arns, input)
}

fn describe_container_instances(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let refs = required(input, "containerInstances")?;
    Ok(c.read(|st| {
        described("containerInstances", &refs, |r| {
            st.container_instance(r)
                .map(|ci| container_instance_json(st, ci))
        })
    }))
}

fn update_container_instances_state(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let refs = required(input, "containerInstances")?;
    let status = input.req("status")?;
    let status = InstanceStatus::settable(status).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterException",
            format!("invalid status {status:?}: expected ACTIVE or DRAINING"),
        )
    })?;
    let (changed, missing) = c
        .update_container_instances_state(&refs, status)
        .map_err(err)?;
    Ok(c.read(|st| {
        json!({
            "containerInstances": changed.iter().map(|ci| container_instance_json(st, ci)).collect::<Vec<_>>(),
            "failures": missing.iter().map(|m| json!({ "arn": m, "reason": "MISSING" })).collect::<Vec<_>>(),
        })
    }))
}

/// A required, non-empty list of strings.
fn required(input: &Input, name: &str) -> Result<Vec<String>, ApiError> {
    let v = input.strings(name)?;
    if v.is_empty() {
        return Err(ApiError::new(
            "InvalidParameterException",
            format!("{name} is required"),
        ));
    }
    Ok(v)
}

/// `{ key: [found...], "failures": [{arn, reason: MISSING}...] }`, as every ECS Describe answers.
fn described(key: &str, refs: &[String], find: impl Fn(&str) -> Option<Value>) -> Value {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match find(r) {
            Some(v) => found.push(v),
            None => failures.push(json!({ "arn": r, "reason": "MISSING" })),
        }
    }
    json!({ key: found, "failures": failures })
}

/// `{ key: [page...], "nextToken"? }`, as every ECS List answers.
fn listed(key: &str, arns: &[String], input: &Input) -> Result<Value, ApiError> {
    let max = input.u32("maxResults", 1, 100)?.unwrap_or(100);
    let (page, next) = page(arns, max, input.str("nextToken")?)?;
    let mut out = json!({ key: page });
    if let Some(n) = next {
        out["nextToken"] = Value::from(n);
    }
    Ok(out)
}

fn page<'a>(
    items: &'a [String],
    max: u32,
    token: Option<&str>,
) -> Result<(&'a [String], Option<String>), ApiError> {
    super::autoscaling::paginate(items, max, token)
        .map_err(|e| ApiError::new("InvalidParameterException", e.message))
}

/// Keeps only the members `localaws` understands, so a real task definition (with roles, log
/// configuration, requirements...) registers, and turns it into the stack's type.
pub fn task_definition_from_json(raw: &Value) -> Result<TaskDefinition, ApiError> {
    fn keep(v: &Value, keys: &[&str]) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| keys.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let mut td = keep(raw, &["family", "networkMode", "containerDefinitions"]);
    if let Some(Value::Array(containers)) = td.get_mut("containerDefinitions") {
        for c in containers.iter_mut() {
            let mut k = keep(
                c,
                &[
                    "name",
                    "image",
                    "essential",
                    "portMappings",
                    "environment",
                    "stopTimeout",
                    "healthCheck",
                    "linuxParameters",
                    "entryPoint",
                    "command",
                    "workingDirectory",
                    "user",
                    "cpu",
                    "memory",
                ],
            );
            if let Some(l) = k.get_mut("linuxParameters") {
                *l = keep(l, &["initProcessEnabled"]);
            }
            if let Some(Value::Array(ports)) = k.get_mut("portMappings") {
                for p in ports.iter_mut() {
                    *p = keep(p, &["containerPort", "hostPort", "protocol"]);
                }
            }
            if let Some(hc) = k.get_mut("healthCheck") {
                *hc = keep(
                    hc,
                    &["command", "interval", "timeout", "retries", "startPeriod"],
                );
            }
            *c = k;
        }
    }
    let td: TaskDefinition = serde_json::from_value(td)
        .map_err(|e| ApiError::new("ClientException", format!("invalid task definition: {e}")))?;
    if let Some(mode) = &td.network_mode
        && !matches!(mode.as_str(), "bridge" | "host")
    {
        return Err(ApiError::new(
            "ClientException",
            format!(
                "networkMode {mode:?} is not emulated: localaws runs bridge (dynamic host ports) or host"
            ),
        ));
    }
    for c in &td.container_definitions {
        // What a process could not be given: a variable name that is empty or holds `=` or NUL,
        // a value with NUL (the task would fail to start, or get a different variable).
        for kv in &c.environment {
            if kv.name.is_empty()
                || kv.name.contains('=')
                || kv.name.contains('\0')
                || kv.value.contains('\0')
            {
                return Err(ApiError::new(
                    "ClientException",
                    format!(
                        "containerDefinitions[{}].environment: invalid variable {:?} (a name \
                         without = or NUL, a value without NUL)",
                        c.name, kv.name
                    ),
                ));
            }
        }
        if c.stop_timeout.is_some_and(|t| t > 120) {
            return Err(ApiError::new(
                "ClientException",
                format!(
                    "containerDefinitions[{}].stopTimeout must be at most 120 seconds",
                    c.name
                ),
            ));
        }
    }
    Ok(td)
}

fn task_definition_json(rev: &TaskDefinitionRevision) -> Value {
    let mut v = match &rev.raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    v.insert("taskDefinitionArn".into(), Value::from(rev.arn.clone()));
    v.insert("family".into(), Value::from(rev.family.clone()));
    v.insert("revision".into(), Value::from(rev.revision));
    v.insert("status".into(), Value::from("ACTIVE"));
    v.insert("registeredAt".into(), time(rev.registered_at));
    v.entry("networkMode")
        .or_insert_with(|| Value::from("bridge"));
    v.insert("compatibilities".into(), json!(["EC2"]));
    Value::Object(v)
}

fn cluster_json(st: &State) -> Value {
    let registered = st
        .container_instances
        .values()
        .filter(|c| c.status != InstanceStatus::Inactive)
        .count();
    let running = st
        .tasks
        .values()
        .filter(|t| t.last_status == TaskStatus::Running)
        .count();
    let pending = st
        .tasks
        .values()
        .filter(|t| t.last_status == TaskStatus::Provisioning)
        .count();
    json!({
        "clusterArn": st.cluster_arn(),
        "clusterName": st.cluster,
        "status": "ACTIVE",
        "registeredContainerInstancesCount": registered,
        "runningTasksCount": running,
        "pendingTasksCount": pending,
        "activeServicesCount": st.services.len(),
        "capacityProviders": st.asg.as_ref().map(|a| vec![a.capacity_provider.clone()]).unwrap_or_default(),
    })
}

fn service_json(st: &State, s: &Service) -> Value {
    let td_arn = |f: &str, r: u32| {
        st.task_definition(&format!("{f}:{r}"))
            .map(|t| t.arn.clone())
            .unwrap_or_default()
    };
    let mine: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| {
            t.service.as_deref() == Some(s.name.as_str()) && t.desired_status == TaskStatus::Running
        })
        .collect();
    let running = mine
        .iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .count();
    let pending = mine
        .iter()
        .filter(|t| t.last_status == TaskStatus::Provisioning)
        .count();
    let deployments: Vec<Value> = s
        .deployments
        .iter()
        .map(|d| {
            let count = |status: TaskStatus| {
                mine.iter()
                    .filter(|t| t.last_status == status && t.task_definition == d.task_definition)
                    .count()
            };
            json!({
                "id": d.id,
                "status": d.role.as_str(),
                "taskDefinition": td_arn(&d.task_definition.0, d.task_definition.1),
                "desiredCount": if d.role == DeploymentRole::Primary { s.desired } else { 0 },
                "runningCount": count(TaskStatus::Running),
                "pendingCount": count(TaskStatus::Provisioning),
                "failedTasks": d.failed_tasks,
                "rolloutState": d.rollout.as_str(),
                "rolloutStateReason": d.reason,
                "launchType": "EC2",
                "createdAt": time(d.created),
                "updatedAt": time(d.updated),
            })
        })
        .collect();
    let breaker = s.circuit_breaker.unwrap_or(CircuitBreakerConfig {
        enable: false,
        rollback: false,
    });
    json!({
        "serviceArn": s.arn,
        "serviceName": s.name,
        "clusterArn": st.cluster_arn(),
        "status": "ACTIVE",
        "desiredCount": s.desired,
        "runningCount": running,
        "pendingCount": pending,
        "launchType": "EC2",
        "taskDefinition": td_arn(&s.task_definition.0, s.task_definition.1),
        "deploymentConfiguration": {
            "minimumHealthyPercent": s.min_healthy,
            "maximumPercent": s.max_percent,
            "deploymentCircuitBreaker": { "enable": breaker.enable, "rollback": breaker.rollback },
        },
        "deployments": deployments,
        "currentServiceDeployment": s.service_deployments.last().map(|d| {
            crate::arn::service_deployment(&st.cluster, &s.name, &d.id)
        }),
        "taskSets": s.task_sets.iter().map(|t| task_set_json(st, s, t)).collect::<Vec<_>>(),
        "deploymentController": { "type": s.controller },
        "loadBalancers": s.load_balancer.iter().map(|lb| json!({
            "targetGroupArn": crate::arn::target_group_arn(&lb.target_group),
            "containerName": lb.container_name,
            "containerPort": lb.container_port,
        })).collect::<Vec<_>>(),
        "healthCheckGracePeriodSeconds": s.grace,
        "schedulingStrategy": "REPLICA",
        "placementStrategy": [{ "type": "spread", "field": "instanceId" }],
        "createdAt": time(s.created),
        "events": s.events.iter().rev().take(100).map(|(at, message, id)| json!({
            "id": id, "createdAt": time(*at), "message": message,
        })).collect::<Vec<_>>(),
    })
}

fn task_set_json(st: &State, s: &Service, ts: &crate::control::TaskSet) -> Value {
    let (running, pending) = st.task_set_counts(&ts.id);
    let td = st
        .task_definition(&format!(
            "{}:{}",
            ts.task_definition.0, ts.task_definition.1
        ))
        .map(|t| t.arn.clone())
        .unwrap_or_default();
    let mut v = json!({
        "id": ts.id,
        "taskSetArn": ts.arn,
        "serviceArn": s.arn,
        "clusterArn": st.cluster_arn(),
        "status": ts.status.as_str(),
        "taskDefinition": td,
        "computedDesiredCount": ts.computed_desired(s.desired),
        "pendingCount": pending,
        "runningCount": running,
        "createdAt": time(ts.created),
        "updatedAt": time(ts.updated),
        "launchType": "EC2",
        "scale": { "value": ts.scale, "unit": "PERCENT" },
        "stabilityStatus": if ts.steady { "STEADY_STATE" } else { "STABILIZING" },
        "stabilityStatusAt": time(ts.updated),
        "loadBalancers": ts.load_balancer.iter().map(|lb| json!({
            "targetGroupArn": crate::arn::target_group_arn(&lb.target_group),
            "containerName": lb.container_name,
            "containerPort": lb.container_port,
        })).collect::<Vec<_>>(),
    });
    if let Some(x) = &ts.external_id {
        v["externalId"] = json!(x);
        v["startedBy"] = json!("CodeDeploy");
    }
    v
}

fn task_json(st: &State, t: &Task) -> Value {
    let td_arn = st
        .task_definition(&format!("{}:{}", t.task_definition.0, t.task_definition.1))
        .map(|d| d.arn.clone())
        .unwrap_or_default();
    let ci_arn = st
        .container_instances
        .get(&t.instance)
        .map(|c| c.arn.clone())
        .unwrap_or_default();
    let serving = t
        .definition
        .serving_container(t.serving.as_deref())
        .map(|c| c.name.clone());
    let containers: Vec<Value> = t
        .definition
        .container_definitions
        .iter()
        .map(|c| {
            let exit = t.exit_codes.get(&c.name);
            let status = if exit.is_some() {
                "STOPPED"
            } else {
                t.last_status.as_str()
            };
            // Only the load balancer's container has a binding the control plane knows.
            let bindings = match t.endpoint {
                Some(e) if serving.as_deref() == Some(c.name.as_str()) => vec![json!({
                    "bindIP": e.ip().to_string(),
                    "containerPort": c.port_mappings.first().map(|p| p.container_port),
                    "hostPort": e.port(),
                    "protocol": "tcp",
                })],
                _ => Vec::new(),
            };
            json!({
                "containerArn": format!("{}/{}", t.arn.replace(":task/", ":container/"), c.name),
                "taskArn": t.arn,
                "name": c.name,
                "image": c.image,
                "lastStatus": status,
                "exitCode": exit,
                "healthStatus": t.container_health(&c.name).as_str(),
                "networkBindings": bindings,
            })
        })
        .collect();
    let mut v = json!({
        "taskArn": t.arn,
        "clusterArn": st.cluster_arn(),
        "taskDefinitionArn": td_arn,
        "containerInstanceArn": ci_arn,
        "lastStatus": t.last_status.as_str(),
        "desiredStatus": t.desired_status.as_str(),
        "launchType": "EC2",
        "createdAt": time(t.created_at),
        "group": t.service.as_ref().map(|s| format!("service:{s}")).unwrap_or_else(|| format!("family:{}", t.task_definition.0)),
        "healthStatus": t.health_status().as_str(),
        "containers": containers,
    });
    let m = v.as_object_mut();
    if let Some(m) = m {
        if let Some(at) = t.started_at {
            m.insert("startedAt".into(), time(at));
        }
        if let Some(at) = t.stopping_at {
            m.insert("stoppingAt".into(), time(at));
        }
        if let Some(at) = t.stopped_at {
            m.insert("stoppedAt".into(), time(at));
        }
        if let Some(r) = &t.stopped_reason {
            m.insert("stoppedReason".into(), Value::from(r.clone()));
        }
        if let Some(code) = t.stop_code {
            m.insert("stopCode".into(), Value::from(code.as_str()));
        }
        // A service's task says which deployment started it, as ECS's `startedBy` does.
        if let Some(d) = &t.deployment {
            m.insert("startedBy".into(), Value::from(d.clone()));
        }
    }
    v
}

fn container_instance_json(st: &State, ci: &crate::control::ContainerInstance) -> Value {
    let running = st
        .tasks
        .values()
        .filter(|t| t.instance == ci.ec2_instance && t.last_status == TaskStatus::Running)
        .count();
    let pending = st
        .tasks
        .values()
        .filter(|t| t.instance == ci.ec2_instance && t.last_status == TaskStatus::Provisioning)
        .count();
    json!({
        "containerInstanceArn": ci.arn,
        "ec2InstanceId": ci.ec2_instance,
        "status": ci.status.as_str(),
        "agentConnected": ci.agent_connected,
        "runningTasksCount": running,
        "pendingTasksCount": pending,
        "registeredAt": time(ci.registered_at),
        "capacityProviderName": st.asg.as_ref().map(|a| a.capacity_provider.clone()),
        "versionInfo": { "agentVersion": "1.89.0", "dockerVersion": "localaws" },
    })
}

/// `ListServiceDeployments`: a service's deployments, newest first, filtered by status and
/// creation time, in pages.
fn list_service_deployments(c: &Control, input: &Input) -> Result<Value, ApiError> {
    cluster(c, input)?;
    let service = input.req("service")?;
    let statuses = input.strings("status")?;
    if let Some(bad) = statuses
        .iter()
        .find(|s| !SERVICE_DEPLOYMENT_STATUSES.contains(&s.as_str()))
    {
        return Err(ApiError::new(
            "InvalidParameterException",
            format!(
                "invalid status {bad:?}: expected one of {}",
                SERVICE_DEPLOYMENT_STATUSES.join(", ")
            ),
        ));
    }
    let created = input.object("createdAt")?;
    let bound = |name: &str| {
        created
            .as_ref()
            .and_then(|o| o.0.get(name))
            .and_then(Value::as_f64)
    };
    let (before, after) = (bound("before"), bound("after"));
    let max = input.u32("maxResults", 1, 100)?.unwrap_or(20);
    let token = input.str("nextToken")?;
    c.read(|st| {
        let svc = st.service(service).map_err(err)?;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let matching: Vec<&ServiceDeployment> = svc
            .service_deployments
            .iter()
            .rev()
            .filter(|d| statuses.is_empty() || statuses.iter().any(|s| s == d.status.as_str()))
            .filter(|d| before.is_none_or(|b| secs(d.created) < b))
            .filter(|d| after.is_none_or(|a| secs(d.created) > a))
            .collect();
        let ids: Vec<String> = matching.iter().map(|d| d.id.clone()).collect();
        let (shown, next) = page(&ids, max, token)?;
        let briefs: Vec<Value> = matching
            .iter()
            .filter(|d| shown.contains(&d.id))
            .map(|d| {
                let mut v = json!({
                    "serviceDeploymentArn": crate::arn::service_deployment(&st.cluster, &svc.name, &d.id),
                    "serviceArn": svc.arn,
                    "clusterArn": st.cluster_arn(),
                    "createdAt": time(d.created),
                    "startedAt": time(d.created),
                    "targetServiceRevisionArn": revision_arn(st, svc, &d.target),
                    "status": d.status.as_str(),
                });
                if let Some(at) = d.finished {
                    v["finishedAt"] = time(at);
                }
                if let Some(r) = &d.reason {
                    v["statusReason"] = json!(r);
                }
                v
            })
            .collect();
        let mut out = json!({ "serviceDeployments": briefs });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    })
}

/// The revision ARN of deployment `deployment` (`ecs-svc/N` → `.../N`).
fn revision_arn(st: &State, svc: &Service, deployment: &str) -> String {
    let number = deployment.strip_prefix("ecs-svc/").unwrap_or(deployment);
    crate::arn::service_revision(&st.cluster, &svc.name, number)
}

/// `DescribeServiceDeployments`: each ARN's service deployment, or a `MISSING` failure.
fn describe_service_deployments(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let arns = input.strings("serviceDeploymentArns")?;
    if arns.is_empty() || arns.len() > 20 {
        return Err(ApiError::new(
            "InvalidParameterException",
            "serviceDeploymentArns: expected 1 to 20 ARNs",
        ));
    }
    c.read(|st| {
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            match find_service_deployment(st, arn) {
                Some((svc, d)) => found.push(service_deployment_json(st, svc, d)),
                None => failures.push(json!({ "arn": arn, "reason": "MISSING" })),
            }
        }
        Ok(json!({ "serviceDeployments": found, "failures": failures }))
    })
}

/// The service deployment whose ARN is `arn`, with its service.
fn find_service_deployment<'a>(
    st: &'a State,
    arn: &str,
) -> Option<(&'a Service, &'a ServiceDeployment)> {
    let id = arn.rsplit('/').next().unwrap_or(arn);
    st.services.values().find_map(|svc| {
        let d = svc.service_deployment(id)?;
        (crate::arn::service_deployment(&st.cluster, &svc.name, id) == arn).then_some((svc, d))
    })
}

fn service_deployment_json(st: &State, svc: &Service, d: &ServiceDeployment) -> Value {
    let summary = |deployment: &str| {
        let of = |status: TaskStatus| {
            st.tasks
                .values()
                .filter(|t| {
                    t.deployment.as_deref() == Some(deployment)
                        && t.last_status == status
                        && t.desired_status == TaskStatus::Running
                })
                .count()
        };
        let primary = svc.primary().is_some_and(|p| p.id == deployment);
        json!({
            "arn": revision_arn(st, svc, deployment),
            "requestedTaskCount": if primary { svc.desired } else { 0 },
            "runningTaskCount": of(TaskStatus::Running),
            "pendingTaskCount": of(TaskStatus::Provisioning),
        })
    };
    let breaker = svc.circuit_breaker.unwrap_or(CircuitBreakerConfig {
        enable: false,
        rollback: false,
    });
    let breaker_status = if !breaker.enable {
        "DISABLED"
    } else if d.breaker_triggered {
        "TRIGGERED"
    } else if d.status == ServiceDeploymentStatus::Successful {
        "MONITORING_COMPLETE"
    } else {
        "MONITORING"
    };
    let mut v = json!({
        "serviceDeploymentArn": crate::arn::service_deployment(&st.cluster, &svc.name, &d.id),
        "serviceArn": svc.arn,
        "clusterArn": st.cluster_arn(),
        "createdAt": time(d.created),
        "startedAt": time(d.created),
        "updatedAt": time(d.updated),
        "sourceServiceRevisions": d.sources.iter().map(|s| summary(s)).collect::<Vec<_>>(),
        "targetServiceRevision": summary(&d.target),
        "status": d.status.as_str(),
        "deploymentConfiguration": {
            "strategy": "ROLLING",
            "minimumHealthyPercent": svc.min_healthy,
            "maximumPercent": svc.max_percent,
            "deploymentCircuitBreaker": { "enable": breaker.enable, "rollback": breaker.rollback },
        },
        "deploymentCircuitBreaker": {
            "status": breaker_status,
            "failureCount": d.failures,
            "threshold": CircuitBreakerConfig::threshold(svc.desired),
        },
    });
    if let Some(at) = d.finished {
        v["finishedAt"] = time(at);
    }
    if let Some(at) = d.stopped {
        v["stoppedAt"] = time(at);
    }
    if let Some(r) = &d.reason {
        v["statusReason"] = json!(r);
    }
    if let Some(r) = &d.rollback {
        v["rollback"] = json!({
            "reason": r.reason,
            "startedAt": time(r.started),
            "serviceRevisionArn": revision_arn(st, svc, &r.to),
        });
    }
    v
}

/// `StopServiceDeployment`: `ROLLBACK` (the type the guide documents, and the default here).
fn stop_service_deployment(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let arn = input.req("serviceDeploymentArn")?;
    match input.str("stopType")?.unwrap_or("ROLLBACK") {
        "ROLLBACK" => {}
        "ABORT" => {
            return Err(ApiError::new(
                "InvalidParameterException",
                "stopType ABORT is not emulated: localaws stops a service deployment by rolling it back (ROLLBACK)",
            ));
        }
        other => {
            return Err(ApiError::new(
                "InvalidParameterException",
                format!("invalid stopType {other:?}: expected ROLLBACK or ABORT"),
            ));
        }
    }
    let Some(id) = c.read(|st| find_service_deployment(st, arn).map(|(_, d)| d.id.clone())) else {
        return Err(err(ControlError::not_found("service deployment", arn)));
    };
    c.stop_service_deployment(&id).map_err(err)?;
    Ok(json!({ "serviceDeploymentArn": arn }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(env: &Value) -> Result<TaskDefinition, ApiError> {
        task_definition_from_json(&json!({
            "family": "web",
            "containerDefinitions": [{
                "name": "web",
                "image": "server",
                "environment": env,
            }],
        }))
    }

    #[test]
    fn environment_a_process_cannot_receive_is_a_client_error() {
        assert!(td(&json!([{ "name": "APP_VERSION", "value": "v2" }])).is_ok());
        for bad in [
            json!([{ "name": "", "value": "x" }]),
            json!([{ "name": "A=B", "value": "x" }]),
            json!([{ "name": "A\u{0}", "value": "x" }]),
            json!([{ "name": "A", "value": "x\u{0}y" }]),
        ] {
            let e = td(&bad).expect_err(&format!("{bad} was accepted"));
            assert_eq!(e.code, "ClientException");
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains("environment"), "{}", e.message);
        }
    }
}
