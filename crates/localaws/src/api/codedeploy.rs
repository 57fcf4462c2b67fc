//! AWS CodeDeploy for ECS (awsJson1_1, `X-Amz-Target: CodeDeploy_20141006.*`).

use serde_json::{Value, json};

use super::json::{Input, time};
use super::{ApiError, unsupported};
use crate::control::codedeploy::{
    Application, DeploymentConfig, DeploymentGroup, DeploymentStatus, EventStatus, HookOutcome,
    NewDeployment, Phase, Traffic, WaitType,
};
use crate::control::{Control, ControlError, Deployment, State};

/// The `X-Amz-Target` service name.
pub const TARGET_PREFIX: &str = "CodeDeploy_20141006";

fn err(e: ControlError) -> ApiError {
    ApiError::from_control(e, "InvalidInputException", |kind, name| match kind {
        "application" => (
            "ApplicationDoesNotExistException".into(),
            format!("No application found for name: {name}"),
        ),
        "deployment group" => (
            "DeploymentGroupDoesNotExistException".into(),
            format!("No Deployment Group found for name: {name}"),
        ),
        "deployment config" => (
            "DeploymentConfigDoesNotExistException".into(),
            format!("No deployment configuration found for name: {name}"),
        ),
        "deployment" => (
            "DeploymentDoesNotExistException".into(),
            format!("Deployment {name} does not exist"),
        ),
        _ => (
            "InvalidInputException".into(),
            format!("{kind} {name} not found"),
        ),
    })
}

fn required<'a>(input: &'a Input, name: &str, code: &str) -> Result<&'a str, ApiError> {
    input
        .str(name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(code, format!("{name} is required")))
}

fn deployment_id(input: &Input) -> Result<&str, ApiError> {
    let id = required(input, "deploymentId", "DeploymentIdRequiredException")?;
    let ok = id.len() == 11
        && id.starts_with("d-")
        && id[2..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(id)
    } else {
        Err(ApiError::new(
            "InvalidDeploymentIdException",
            format!("Specified DeploymentId is not in the valid format: {id}"),
        ))
    }
}

/// Handles one operation: one function per operation.
pub fn handle(c: &Control, operation: &str, input: &Input) -> Result<Value, ApiError> {
    match operation {
        "GetApplication" => get_application(c, input),
        "ListApplications" => list_applications(c),
        "BatchGetApplications" => batch_get_applications(c, input),
        "GetDeploymentGroup" => get_deployment_group(c, input),
        "ListDeploymentGroups" => list_deployment_groups(c, input),
        "GetDeploymentConfig" => get_deployment_config(c, input),
        "ListDeploymentConfigs" => list_deployment_configs(c),
        "CreateDeploymentConfig" => create_deployment_config(c, input),
        "CreateDeployment" => create_deployment(c, input),
        "GetDeployment" => get_deployment(c, input),
        "BatchGetDeployments" => batch_get_deployments(c, input),
        "ListDeployments" => list_deployments(c, input),
        "StopDeployment" => stop_deployment(c, input),
        "ContinueDeployment" => continue_deployment(c, input),
        "PutLifecycleEventHookExecutionStatus" => {
            put_lifecycle_event_hook_execution_status(c, input)
        }
        "ListDeploymentTargets" => list_deployment_targets(c, input),
        "GetDeploymentTarget" => get_deployment_target(c, input),
        "BatchGetDeploymentTargets" => batch_get_deployment_targets(c, input),
        other => Err(unsupported("CodeDeploy", other, "InvalidInputException")),
    }
}

fn get_application(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let name = required(input, "applicationName", "ApplicationNameRequiredException")?;
    let app = c
        .read(|st| st.codedeploy.application(name).cloned())
        .map_err(err)?;
    Ok(json!({ "application": application_json(&app) }))
}

fn list_applications(c: &Control) -> Result<Value, ApiError> {
    Ok(c.read(
        |st| json!({ "applications": st.codedeploy.applications.keys().collect::<Vec<_>>() }),
    ))
}

fn batch_get_applications(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let names = input.strings("applicationNames")?;
    c.read(|st| {
        let apps = names
            .iter()
            .map(|n| st.codedeploy.application(n).map(application_json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(json!({ "applicationsInfo": apps }))
    })
}

fn get_deployment_group(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let app = required(input, "applicationName", "ApplicationNameRequiredException")?;
    let group = required(
        input,
        "deploymentGroupName",
        "DeploymentGroupNameRequiredException",
    )?;
    c.read(|st| {
        let a = st.codedeploy.application(app).map_err(err)?;
        let g = st.codedeploy.group(app, group).map_err(err)?;
        Ok(json!({ "deploymentGroupInfo": group_json(c.stack(), st, a, g) }))
    })
}

fn list_deployment_groups(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let app = required(input, "applicationName", "ApplicationNameRequiredException")?;
    c.read(|st| {
        let a = st.codedeploy.application(app).map_err(err)?;
        Ok(json!({
            "applicationName": a.name,
            "deploymentGroups": a.groups.keys().collect::<Vec<_>>(),
        }))
    })
}

fn get_deployment_config(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let name = required(
        input,
        "deploymentConfigName",
        "DeploymentConfigNameRequiredException",
    )?;
    let dc = c
        .read(|st| st.codedeploy.config(name).cloned())
        .map_err(err)?;
    Ok(json!({ "deploymentConfigInfo": config_json(&dc) }))
}

fn list_deployment_configs(c: &Control) -> Result<Value, ApiError> {
    Ok(c.read(
        |st| json!({ "deploymentConfigsList": st.codedeploy.configs.keys().collect::<Vec<_>>() }),
    ))
}

fn create_deployment_config(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let name = required(
        input,
        "deploymentConfigName",
        "DeploymentConfigNameRequiredException",
    )?;
    if name.starts_with("CodeDeployDefault.") || name.len() > 100 {
        return Err(ApiError::new(
            "InvalidDeploymentConfigNameException",
            format!(
                "invalid deployment config name {name:?}: 1 to 100 characters, not starting with CodeDeployDefault."
            ),
        ));
    }
    match input.str("computePlatform")? {
        None | Some("ECS") => {}
        Some(other) => {
            return Err(ApiError::new(
                "InvalidComputePlatformException",
                format!("localaws emulates the ECS compute platform only, not {other}"),
            ));
        }
    }
    let traffic = traffic_from(input)?;
    let dc = c.create_deployment_config(name, traffic).map_err(err)?;
    Ok(json!({ "deploymentConfigId": dc.id }))
}

fn create_deployment(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let application =
        required(input, "applicationName", "ApplicationNameRequiredException")?.to_owned();
    let group = required(
        input,
        "deploymentGroupName",
        "DeploymentGroupNameRequiredException",
    )?
    .to_owned();
    let description = input.str("description")?.map(str::to_owned);
    if description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::new(
            "DescriptionTooLongException",
            "description is longer than 1024 characters",
        ));
    }
    let appspec = revision_content(input)?;
    let id = c
        .create_deployment(&NewDeployment {
            application,
            group,
            config: input.str("deploymentConfigName")?.map(str::to_owned),
            description,
            appspec,
        })
        .map_err(err)?;
    Ok(json!({ "deploymentId": id }))
}

fn get_deployment(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    c.read(|st| {
        let d = st.codedeploy.deployment(id).map_err(err)?;
        Ok(json!({ "deploymentInfo": deployment_json(st, d) }))
    })
}

fn batch_get_deployments(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let ids = input.strings("deploymentIds")?;
    Ok(c.read(|st| {
        let found: Vec<Value> = ids
            .iter()
            .filter_map(|id| st.codedeploy.deployment(id).ok())
            .map(|d| deployment_json(st, d))
            .collect();
        json!({ "deploymentsInfo": found })
    }))
}

fn list_deployments(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let app = input.str("applicationName")?;
    let group = input.str("deploymentGroupName")?;
    if group.is_some() && app.is_none() {
        return Err(ApiError::new(
            "ApplicationNameRequiredException",
            "applicationName is required with deploymentGroupName",
        ));
    }
    if app.is_some() && group.is_none() {
        return Err(ApiError::new(
            "DeploymentGroupNameRequiredException",
            "deploymentGroupName is required with applicationName",
        ));
    }
    let statuses = input
        .strings("includeOnlyStatuses")?
        .iter()
        .map(|s| {
            DeploymentStatus::parse(s).ok_or_else(|| {
                ApiError::new(
                    "InvalidDeploymentStatusException",
                    format!("invalid deployment status {s:?}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    c.read(|st| {
        if let (Some(a), Some(g)) = (app, group) {
            st.codedeploy.group(a, g).map_err(err)?;
        }
        let ids: Vec<&str> = st
            .codedeploy
            .deployments
            .iter()
            .rev()
            .filter(|d| app.is_none_or(|a| d.application == a))
            .filter(|d| group.is_none_or(|g| d.group == g))
            .filter(|d| statuses.is_empty() || statuses.contains(&d.status))
            .map(|d| d.id.as_str())
            .collect();
        Ok(json!({ "deployments": ids }))
    })
}

fn stop_deployment(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    let rollback = input.bool("autoRollbackEnabled")?;
    let (status, message) = c.stop_deployment(id, rollback).map_err(err)?;
    Ok(json!({ "status": status, "statusMessage": message }))
}

fn continue_deployment(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    let wait = input.str("deploymentWaitType")?.unwrap_or("READY_WAIT");
    let wait = WaitType::parse(wait).ok_or_else(|| {
        ApiError::new(
            "InvalidDeploymentWaitTypeException",
            format!("invalid deploymentWaitType {wait:?}: expected READY_WAIT or TERMINATION_WAIT"),
        )
    })?;
    c.continue_deployment(id, wait).map_err(err)?;
    Ok(json!({}))
}

fn put_lifecycle_event_hook_execution_status(
    c: &Control,
    input: &Input,
) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    let exec = required(
        input,
        "lifecycleEventHookExecutionId",
        "InvalidLifecycleEventHookExecutionIdException",
    )?;
    let status = required(
        input,
        "status",
        "InvalidLifecycleEventHookExecutionStatusException",
    )?;
    let outcome = match status {
        "Succeeded" => HookOutcome::Succeeded,
        "Failed" => HookOutcome::Failed,
        other => {
            return Err(ApiError::new(
                "InvalidLifecycleEventHookExecutionStatusException",
                format!("invalid status {other:?}: expected Succeeded or Failed"),
            ));
        }
    };
    c.put_hook_status(id, exec, outcome).map_err(err)?;
    Ok(json!({ "lifecycleEventHookExecutionId": exec }))
}

fn list_deployment_targets(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    c.read(|st| {
        let d = st.codedeploy.deployment(id).map_err(err)?;
        Ok(json!({ "targetIds": [d.target_id(&st.cluster)] }))
    })
}

fn get_deployment_target(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    let target = required(input, "targetId", "DeploymentTargetIdRequiredException")?;
    c.read(|st| {
        let d = st.codedeploy.deployment(id).map_err(err)?;
        if target != d.target_id(&st.cluster) {
            return Err(ApiError::new(
                "DeploymentTargetDoesNotExistException",
                format!("Deployment target {target} does not exist in deployment {id}"),
            ));
        }
        Ok(json!({ "deploymentTarget": {
            "deploymentTargetType": "ECSTarget",
            "ecsTarget": ecs_target_json(st, d),
        }}))
    })
}

fn batch_get_deployment_targets(c: &Control, input: &Input) -> Result<Value, ApiError> {
    let id = deployment_id(input)?;
    let targets = input.strings("targetIds")?;
    c.read(|st| {
        let d = st.codedeploy.deployment(id).map_err(err)?;
        let mine = d.target_id(&st.cluster);
        Ok(
            json!({ "deploymentTargets": targets.iter().filter(|t| **t == mine).map(|_| json!({
            "deploymentTargetType": "ECSTarget",
            "ecsTarget": ecs_target_json(st, d),
        })).collect::<Vec<_>>() }),
        )
    })
}

fn traffic_from(input: &Input) -> Result<Traffic, ApiError> {
    let bad = |m: String| ApiError::new("InvalidTrafficRoutingConfigurationException", m);
    let Some(cfg) = input.object("trafficRoutingConfig")? else {
        return Err(bad(
            "trafficRoutingConfig is required for the ECS compute platform".into(),
        ));
    };
    let kind = cfg.str("type")?.unwrap_or("AllAtOnce");
    let (percent, minutes) = match kind {
        "TimeBasedCanary" => {
            let o = cfg
                .object("timeBasedCanary")?
                .ok_or_else(|| bad("timeBasedCanary is required for TimeBasedCanary".into()))?;
            (
                o.u32("canaryPercentage", 0, 100)?.unwrap_or(0),
                o.u32("canaryInterval", 0, 100_000)?.unwrap_or(0),
            )
        }
        "TimeBasedLinear" => {
            let o = cfg
                .object("timeBasedLinear")?
                .ok_or_else(|| bad("timeBasedLinear is required for TimeBasedLinear".into()))?;
            (
                o.u32("linearPercentage", 0, 100)?.unwrap_or(0),
                o.u32("linearInterval", 0, 100_000)?.unwrap_or(0),
            )
        }
        _ => (0, 0),
    };
    Traffic::parse(kind, percent, minutes).map_err(bad)
}

fn revision_content(input: &Input) -> Result<String, ApiError> {
    let rev = input.object("revision")?.ok_or_else(|| {
        ApiError::new(
            "RevisionRequiredException",
            "revision is required: an AppSpecContent or String revision holding the AppSpec",
        )
    })?;
    let kind = rev.str("revisionType")?.unwrap_or("");
    let holder = match kind {
        "AppSpecContent" => rev.object("appSpecContent")?,
        "String" => rev.object("string")?,
        other => {
            return Err(ApiError::new(
                "InvalidRevisionException",
                format!(
                    "revisionType {other:?} is not supported here: expected AppSpecContent or String (localaws reads no S3 or GitHub)"
                ),
            ));
        }
    };
    holder
        .as_ref()
        .and_then(|h| h.str("content").ok().flatten())
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidRevisionException",
                "the revision holds no AppSpec content",
            )
        })
}

fn application_json(a: &Application) -> Value {
    json!({
        "applicationId": a.id,
        "applicationName": a.name,
        "createTime": time(a.created),
        "linkedToGitHub": false,
        "computePlatform": "ECS",
    })
}

/// The ARN of the listener called `name` (of the load balancer that has it).
fn listener_arn(stack: &stack::Stack, name: &str) -> String {
    let lb = stack
        .load_balancers
        .iter()
        .find(|lb| lb.listeners.iter().any(|l| l.name == name))
        .map_or("", |lb| lb.name.as_str());
    crate::arn::listener_arn(lb, name)
}

fn group_json(stack: &stack::Stack, st: &State, a: &Application, g: &DeploymentGroup) -> Value {
    let cfg = &g.config;
    let summary = |x: &Option<(String, DeploymentStatus, std::time::SystemTime)>| {
        x.as_ref().map(|(id, status, created)| {
            json!({ "deploymentId": id, "status": status.as_str(), "createTime": time(*created) })
        })
    };
    json!({
        "applicationName": a.name,
        "deploymentGroupId": g.id,
        "deploymentGroupName": cfg.name,
        "deploymentConfigName": cfg.deployment_config,
        "serviceRoleArn": crate::arn::global("iam", &format!("role/{}-codedeploy", a.name)),
        "deploymentStyle": { "deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL" },
        "blueGreenDeploymentConfiguration": {
            "terminateBlueInstancesOnDeploymentSuccess": {
                "action": "TERMINATE",
                "terminationWaitTimeInMinutes": cfg.termination_wait_minutes,
            },
            "deploymentReadyOption": {
                "actionOnTimeout": cfg.deployment_ready.action_on_timeout,
                "waitTimeInMinutes": cfg.deployment_ready.wait_time_in_minutes,
            },
        },
        "loadBalancerInfo": { "targetGroupPairInfoList": [{
            "targetGroups": cfg.target_groups.iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
            "prodTrafficRoute": { "listenerArns": [listener_arn(stack, &cfg.production_listener)] },
            "testTrafficRoute": { "listenerArns": cfg.test_listener.iter().map(|t| listener_arn(stack, t)).collect::<Vec<_>>() },
        }]},
        "ecsServices": [{ "serviceName": cfg.service, "clusterName": st.cluster }],
        "autoRollbackConfiguration": {
            "enabled": cfg.auto_rollback.enabled,
            "events": cfg.auto_rollback.events,
        },
        "alarmConfiguration": {
            "enabled": !cfg.alarms.is_empty(),
            "ignorePollAlarmFailure": false,
            "alarms": cfg.alarms.iter().map(|a| json!({ "name": a })).collect::<Vec<_>>(),
        },
        "computePlatform": "ECS",
        "lastAttemptedDeployment": summary(&g.last_attempted),
        "lastSuccessfulDeployment": summary(&g.last_succeeded),
    })
}

fn config_json(dc: &DeploymentConfig) -> Value {
    let routing = match dc.traffic {
        Traffic::AllAtOnce => json!({ "type": "AllAtOnce" }),
        Traffic::Canary { percent, minutes } => json!({
            "type": "TimeBasedCanary",
            "timeBasedCanary": { "canaryPercentage": percent, "canaryInterval": minutes },
        }),
        Traffic::Linear { percent, minutes } => json!({
            "type": "TimeBasedLinear",
            "timeBasedLinear": { "linearPercentage": percent, "linearInterval": minutes },
        }),
    };
    json!({
        "deploymentConfigId": dc.id,
        "deploymentConfigName": dc.name,
        "createTime": time(dc.created),
        "computePlatform": "ECS",
        "trafficRoutingConfig": routing,
    })
}

fn deployment_json(st: &State, d: &Deployment) -> Value {
    let count = |s: EventStatus| d.events.iter().filter(|e| e.status == s).count();
    let group = st.codedeploy.group(&d.application, &d.group).ok();
    let mut v = json!({
        "applicationName": d.application,
        "deploymentGroupName": d.group,
        "deploymentConfigName": d.config,
        "deploymentId": d.id,
        "revision": {
            "revisionType": "AppSpecContent",
            "appSpecContent": { "content": d.appspec_content },
        },
        "status": d.status.as_str(),
        "createTime": time(d.created),
        "startTime": time(d.created),
        "creator": d.creator.as_str(),
        "deploymentOverview": {
            "Pending": count(EventStatus::Pending),
            "InProgress": count(EventStatus::InProgress),
            "Succeeded": count(EventStatus::Succeeded),
            "Failed": count(EventStatus::Failed),
            "Skipped": count(EventStatus::Skipped),
            "Ready": usize::from(d.phase == Phase::ReadyWait),
        },
        "deploymentStyle": { "deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL" },
        "computePlatform": "ECS",
        "instanceTerminationWaitTimeStarted": matches!(d.phase, Phase::TerminationWait | Phase::Terminating),
        "deploymentStatusMessages": [],
    });
    if let Some(g) = group {
        v["blueGreenDeploymentConfiguration"] = json!({
            "terminateBlueInstancesOnDeploymentSuccess": {
                "action": "TERMINATE",
                "terminationWaitTimeInMinutes": g.config.termination_wait_minutes,
            },
            "deploymentReadyOption": {
                "actionOnTimeout": g.config.deployment_ready.action_on_timeout,
                "waitTimeInMinutes": g.config.deployment_ready.wait_time_in_minutes,
            },
        });
    }
    if let Some(desc) = &d.description {
        v["description"] = json!(desc);
    }
    if let Some(t) = d.completed {
        v["completeTime"] = time(t);
    }
    if let Some((code, message)) = &d.error {
        v["errorInformation"] = json!({ "code": code, "message": message });
    }
    if let Some(r) = &d.rollback {
        let mut info = json!({ "rollbackMessage": r.message });
        if let Some(x) = &r.rollback_deployment_id {
            info["rollbackDeploymentId"] = json!(x);
        }
        if let Some(x) = &r.rollback_triggering_deployment_id {
            info["rollbackTriggeringDeploymentId"] = json!(x);
        }
        v["rollbackInfo"] = info;
    }
    v
}

fn ecs_target_json(st: &State, d: &Deployment) -> Value {
    let svc = st.services.get(&d.service);
    let target_status = d.status.target_status();
    let sets: Vec<Value> = [
        ("Blue", &d.original, 100 - d.weight.min(100)),
        ("Green", &d.replacement, d.weight),
    ]
    .into_iter()
    .filter_map(|(label, set, weight)| {
        let (id, tg) = set.as_ref()?;
        let ts = svc.and_then(|s| s.task_sets.iter().find(|t| &t.id == id));
        let (running, pending) = st.task_set_counts(id);
        Some(json!({
            "identifer": id,
            "desiredCount": ts.map_or(0, |t| t.computed_desired(svc.map_or(0, |s| s.desired))),
            "pendingCount": pending,
            "runningCount": running,
            "status": ts.map_or("DRAINING", |t| t.status.as_str()),
            "trafficWeight": f64::from(weight),
            "targetGroup": { "name": tg },
            "taskSetLabel": label,
        }))
    })
    .collect();
    json!({
        "deploymentId": d.id,
        "targetId": d.target_id(&st.cluster),
        "targetArn": svc.map(|s| s.arn.clone()).unwrap_or_default(),
        "lastUpdatedAt": time(d.updated),
        "status": target_status,
        "lifecycleEvents": d.events.iter().map(|e| {
            let mut v = json!({ "lifecycleEventName": e.name.as_str(), "status": e.status.as_str() });
            if let Some(t) = e.start { v["startTime"] = time(t); }
            if let Some(t) = e.end { v["endTime"] = time(t); }
            if let Some((code, message)) = &e.diagnostics {
                v["diagnostics"] = json!({ "errorCode": code, "message": message, "scriptName": e.name.as_str(), "logTail": "" });
            }
            v
        }).collect::<Vec<_>>(),
        "taskSetsInfo": sets,
    })
}
