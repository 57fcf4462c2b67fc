//! Auto Scaling (awsQuery, `Version=2011-01-01`).

use super::query::{Params, Xml};
use super::{ApiError, unsupported};
use crate::control::Ec2Instance;
use crate::control::autoscaling::GroupUpdate;
use crate::control::ec2::TemplateRef;
use crate::control::refresh::{
    self, InstanceRefresh, RefreshPreferences, ScaleInProtected, Standby, StartRefresh,
};
use crate::control::{Control, ControlError, State};

/// API version.
pub const VERSION: &str = "2011-01-01";
/// XML namespace.
pub const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

fn err(e: ControlError) -> ApiError {
    ApiError::from_control(e, "ValidationError", |kind, name| match kind {
        "auto scaling group" => (
            "ValidationError".into(),
            format!("AutoScalingGroup name not found - {name}"),
        ),
        "launch template" => (
            "ValidationError".into(),
            format!(
                "You must use a valid fully-formed launch template. The specified launch template, with template name {name}, does not exist."
            ),
        ),
        _ => ("ValidationError".into(), format!("{kind} {name} not found")),
    })
}

/// Handles one action: one function per operation.
pub fn handle(c: &Control, action: &str, p: &Params) -> Result<Xml, ApiError> {
    match action {
        "DescribeAutoScalingGroups" => describe_groups(c, p),
        "DescribeAutoScalingInstances" => describe_instances(c, p),
        "SetDesiredCapacity" => set_desired_capacity(c, p),
        "UpdateAutoScalingGroup" => update_auto_scaling_group(c, p),
        "StartInstanceRefresh" => start_instance_refresh(c, p),
        "DescribeInstanceRefreshes" => describe_instance_refreshes(c, p),
        "CancelInstanceRefresh" => cancel_instance_refresh(c, p),
        "RollbackInstanceRefresh" => rollback_instance_refresh(c, p),
        "DescribeScalingActivities" => describe_scaling_activities(c, p),
        "DescribeLifecycleHooks" => describe_lifecycle_hooks(c, p),
        "CompleteLifecycleAction" => complete_lifecycle_action(c, p),
        other => Err(unsupported("Auto Scaling", other, "InvalidAction")),
    }
}

fn set_desired_capacity(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.req("AutoScalingGroupName")?;
    let desired = p
        .u32("DesiredCapacity", 0, 10_000)?
        .ok_or_else(|| ApiError::missing("DesiredCapacity"))?;
    c.update_group(
        name,
        GroupUpdate {
            desired: Some(desired),
            ..GroupUpdate::default()
        },
    )
    .map_err(err)?;
    Ok(Xml::new())
}

fn update_auto_scaling_group(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.req("AutoScalingGroupName")?;
    let lt = p.nested("LaunchTemplate");
    let template = template_ref(&lt)?;
    if let Some(t) = p.get("HealthCheckType")
        && !matches!(t, "EC2" | "ELB")
    {
        return Err(ApiError::validation(format!(
            "invalid HealthCheckType {t:?}: expected EC2 or ELB"
        )));
    }
    c.update_group(
        name,
        GroupUpdate {
            min: p.u32("MinSize", 0, 10_000)?,
            max: p.u32("MaxSize", 0, 10_000)?,
            desired: p.u32("DesiredCapacity", 0, 10_000)?,
            launch_template: template,
            version: lt.get("Version").map(str::to_owned),
            health_check_type: p.get("HealthCheckType").map(str::to_owned),
            health_check_grace_period: p.u32("HealthCheckGracePeriod", 0, 7200)?,
            default_instance_warmup: p.u32("DefaultInstanceWarmup", 0, 3600)?,
        },
    )
    .map_err(err)?;
    Ok(Xml::new())
}

fn start_instance_refresh(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.req("AutoScalingGroupName")?;
    if let Some(s) = p.get("Strategy")
        && s != "Rolling"
    {
        return Err(ApiError::validation(format!(
            "invalid Strategy {s:?}: expected Rolling"
        )));
    }
    let desired = p.nested("DesiredConfiguration");
    let lt = desired.nested("LaunchTemplate");
    let desired = match template_ref(&lt)? {
        Some(r) => Some((r, lt.get("Version").map(str::to_owned))),
        None if desired.has("MixedInstancesPolicy") => {
            return Err(ApiError::validation(
                "DesiredConfiguration.MixedInstancesPolicy is not emulated: use LaunchTemplate",
            ));
        }
        None => None,
    };
    let prefs = preferences(&p.nested("Preferences"))?;
    let id = c
        .start_instance_refresh(name, StartRefresh { desired, prefs })
        .map_err(err)?;
    let mut x = Xml::new();
    x.leaf("InstanceRefreshId", id);
    Ok(x)
}

fn describe_instance_refreshes(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.req("AutoScalingGroupName")?;
    let ids = p.member_values("InstanceRefreshIds");
    let max = p.u32("MaxRecords", 1, 100)?.unwrap_or(50);
    let refreshes: Vec<InstanceRefresh> = c
        .read(|st| {
            st.asg(name)?;
            Ok(st
                .refreshes
                .iter()
                .rev()
                .filter(|r| ids.is_empty() || ids.contains(&r.id))
                .cloned()
                .collect())
        })
        .map_err(err)?;
    let (page, next) = paginate(&refreshes, max, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("InstanceRefreshes", "member", page, refresh_xml);
    x.opt("NextToken", next);
    Ok(x)
}

fn cancel_instance_refresh(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let id = c
        .cancel_instance_refresh(p.req("AutoScalingGroupName")?)
        .map_err(err)?;
    let mut x = Xml::new();
    x.leaf("InstanceRefreshId", id);
    Ok(x)
}

fn rollback_instance_refresh(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let id = c
        .rollback_instance_refresh(p.req("AutoScalingGroupName")?)
        .map_err(err)?;
    let mut x = Xml::new();
    x.leaf("InstanceRefreshId", id);
    Ok(x)
}

fn describe_scaling_activities(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.get("AutoScalingGroupName");
    let ids = p.member_values("ActivityIds");
    let max = p.u32("MaxRecords", 1, 100)?.unwrap_or(100);
    let (group, arn, activities) = c.read(|st| {
        let asg = st.asg.as_ref();
        (
            asg.map(|a| a.name.clone()).unwrap_or_default(),
            asg.map(|a| a.arn.clone()).unwrap_or_default(),
            st.activities
                .iter()
                .rev()
                .filter(|a| ids.is_empty() || ids.contains(&a.id))
                .cloned()
                .collect::<Vec<_>>(),
        )
    });
    let activities = if name.is_some_and(|n| n != group) {
        Vec::new()
    } else {
        activities
    };
    let (page, next) = paginate(&activities, max, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("Activities", "member", page, |x, a| {
        x.leaf("ActivityId", &a.id)
            .leaf("AutoScalingGroupName", &group)
            .leaf("AutoScalingGroupARN", &arn)
            .leaf("Description", &a.description)
            .leaf("Cause", &a.cause)
            .time("StartTime", a.start);
        if let Some(end) = a.end {
            x.time("EndTime", end);
        }
        x.leaf("StatusCode", a.status)
            .leaf("Progress", 100)
            .leaf("Details", format!("{{\"InstanceId\":\"{}\"}}", a.instance));
    });
    x.opt("NextToken", next);
    Ok(x)
}

fn describe_lifecycle_hooks(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let name = p.req("AutoScalingGroupName")?;
    let names = p.member_values("LifecycleHookNames");
    let hooks = c
        .read(|st| st.asg(name).map(|a| a.hooks.clone()))
        .map_err(err)?;
    let mut x = Xml::new();
    x.list(
        "LifecycleHooks",
        "member",
        hooks
            .iter()
            .filter(|h| names.is_empty() || names.contains(&h.name)),
        |x, h| {
            x.leaf("LifecycleHookName", &h.name)
                .leaf("AutoScalingGroupName", name)
                .leaf("LifecycleTransition", &h.transition)
                .leaf("HeartbeatTimeout", h.heartbeat_timeout)
                .leaf(
                    "GlobalTimeout",
                    h.heartbeat_timeout.saturating_mul(100).min(172_800),
                )
                .leaf("DefaultResult", &h.default_result);
        },
    );
    Ok(x)
}

fn complete_lifecycle_action(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    c.complete_lifecycle_action(
        p.req("AutoScalingGroupName")?,
        p.req("LifecycleHookName")?,
        p.req("InstanceId")?,
        p.req("LifecycleActionResult")?,
    )
    .map_err(err)?;
    Ok(Xml::new())
}

fn template_ref(p: &Params) -> Result<Option<TemplateRef>, ApiError> {
    match (p.get("LaunchTemplateName"), p.get("LaunchTemplateId")) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "specify either LaunchTemplateName or LaunchTemplateId, not both",
        )),
        (Some(n), None) => Ok(Some(TemplateRef::Name(n.to_owned()))),
        (None, Some(id)) => Ok(Some(TemplateRef::Id(id.to_owned()))),
        (None, None) => Ok(None),
    }
}

/// `StartInstanceRefresh`'s `Preferences`, checked against the ranges of the API reference
/// (`RefreshPreferences`), refused as AWS refuses them: a `ValidationError` naming the member.
fn preferences(p: &Params) -> Result<RefreshPreferences, ApiError> {
    let d = RefreshPreferences::default();
    // AWS's words: "Value '172801' at 'preferences.bakeTime' failed to satisfy constraint: ...".
    let num = |name: &str, lo: u32, hi: u32| -> Result<Option<u32>, ApiError> {
        let Some(v) = p.get(name) else {
            return Ok(None);
        };
        let member = member(name);
        match v.parse::<i64>() {
            Ok(n) if n < i64::from(lo) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to {lo}"
            ))),
            Ok(n) if n > i64::from(hi) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must have value less than or equal to {hi}"
            ))),
            Ok(n) => Ok(u32::try_from(n).ok()),
            Err(_) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must be a whole number from {lo} to {hi}"
            ))),
        }
    };
    // Each enum parsed here, once: control holds the value, never the text.
    fn one_of<T: Copy>(
        p: &Params,
        name: &str,
        all: &[T],
        as_str: fn(T) -> &'static str,
        default: T,
    ) -> Result<T, ApiError> {
        match p.get(name) {
            None => Ok(default),
            Some(v) => all.iter().copied().find(|x| as_str(*x) == v).ok_or_else(|| {
                ApiError::validation(format!(
                    "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    member(name),
                    all.iter().map(|x| as_str(*x)).collect::<Vec<_>>().join(", ")
                ))
            }),
        }
    }
    let checkpoints = p
        .member_values("CheckpointPercentages")
        .iter()
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(format!(
                        "invalid value {v:?} in Preferences.CheckpointPercentages: expected 1 to 100"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RefreshPreferences {
        min_healthy: num("MinHealthyPercentage", 0, 100)?.unwrap_or(d.min_healthy),
        max_healthy: num("MaxHealthyPercentage", 100, 200)?.unwrap_or(d.max_healthy),
        warmup: num("InstanceWarmup", 0, refresh::MAX_INSTANCE_WARMUP)?,
        skip_matching: p.bool("SkipMatching")?.unwrap_or(false),
        checkpoint_delay: num("CheckpointDelay", 0, refresh::MAX_DELAY)?
            .unwrap_or(d.checkpoint_delay),
        checkpoints,
        auto_rollback: p.bool("AutoRollback")?.unwrap_or(false),
        bake_time: num("BakeTime", 0, refresh::MAX_DELAY)?.unwrap_or(d.bake_time),
        scale_in_protected: one_of(
            p,
            "ScaleInProtectedInstances",
            &ScaleInProtected::ALL,
            ScaleInProtected::as_str,
            d.scale_in_protected,
        )?,
        standby: one_of(
            p,
            "StandbyInstances",
            &Standby::ALL,
            Standby::as_str,
            d.standby,
        )?,
    })
}

/// How AWS names a member of `Preferences` in a validation error: `preferences.bakeTime`.
fn member(name: &str) -> String {
    let mut c = name.chars();
    let first = c.next().map(|f| f.to_ascii_lowercase()).into_iter();
    format!("preferences.{}", first.chain(c).collect::<String>())
}

/// One page of `items` from `token` (an offset, as this emulator issues them).
pub fn paginate<'a, T>(
    items: &'a [T],
    max: u32,
    token: Option<&str>,
) -> Result<(&'a [T], Option<String>), ApiError> {
    let start = match token {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= items.len())
            .ok_or_else(|| ApiError::new("InvalidNextToken", format!("invalid NextToken {t:?}")))?,
    };
    let end = (start + max as usize).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((&items[start..end], next))
}

fn launch_template(x: &mut Xml, st: &State, lt: Option<&(String, u32)>, configured: Option<&str>) {
    let Some((name, version)) = lt else {
        return;
    };
    let id = st
        .launch_templates
        .get(name)
        .map(|t| t.id.clone())
        .unwrap_or_default();
    x.el("LaunchTemplate", |x| {
        x.leaf("LaunchTemplateId", id)
            .leaf("LaunchTemplateName", name)
            .leaf(
                "Version",
                configured.map_or_else(|| version.to_string(), str::to_owned),
            );
    });
}

fn instance_fields(x: &mut Xml, st: &State, i: &Ec2Instance) {
    x.leaf("InstanceId", &i.id)
        .leaf("InstanceType", &i.instance_type)
        .leaf("AvailabilityZone", i.zone)
        .leaf("LifecycleState", i.lifecycle)
        .leaf("HealthStatus", i.health)
        .leaf("ImageId", &i.image_id);
    launch_template(x, st, i.launch_template.as_ref(), None);
    x.leaf("ProtectedFromScaleIn", i.protected);
}

fn describe_groups(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let names = p.member_values("AutoScalingGroupNames");
    let max = p.u32("MaxRecords", 1, 100)?.unwrap_or(50);
    if let Some(t) = p.get("NextToken").filter(|t| !t.is_empty() && *t != "0") {
        return Err(ApiError::new(
            "InvalidNextToken",
            format!("invalid NextToken {t:?}"),
        ));
    }
    let _ = max;
    Ok(c.read(|st| {
        let mut x = Xml::new();
        let groups: Vec<_> = st
            .asg
            .iter()
            .filter(|a| names.is_empty() || names.contains(&a.name))
            .collect();
        x.list("AutoScalingGroups", "member", groups, |x, a| {
            x.leaf("AutoScalingGroupName", &a.name)
                .leaf("AutoScalingGroupARN", &a.arn);
            let id = st
                .launch_templates
                .get(&a.launch_template)
                .map(|t| t.id.clone())
                .unwrap_or_default();
            x.el("LaunchTemplate", |x| {
                x.leaf("LaunchTemplateId", id)
                    .leaf("LaunchTemplateName", &a.launch_template)
                    .leaf("Version", &a.version);
            });
            x.leaf("MinSize", a.min)
                .leaf("MaxSize", a.max)
                .leaf("DesiredCapacity", a.desired)
                .leaf("DefaultCooldown", 300)
                .list(
                    "AvailabilityZones",
                    "member",
                    ["us-east-1a", "us-east-1b", "us-east-1c"],
                    |x, z| {
                        x.text(z);
                    },
                )
                .leaf("HealthCheckType", &a.health_check_type)
                .leaf("HealthCheckGracePeriod", a.health_check_grace_period)
                .list(
                    "TargetGroupARNs",
                    "member",
                    &a.target_groups,
                    |x, (tg, _)| {
                        x.text(&crate::arn::target_group_arn(tg));
                    },
                )
                .list("Instances", "member", st.group_instances(), |x, i| {
                    instance_fields(x, st, i)
                })
                .time("CreatedTime", a.created)
                .list("TerminationPolicies", "member", ["Default"], |x, t| {
                    x.text(t);
                })
                .leaf(
                    "NewInstancesProtectedFromScaleIn",
                    a.managed_termination_protection,
                )
                .opt("DefaultInstanceWarmup", a.default_instance_warmup);
        });
        x
    }))
}

fn describe_instances(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let ids = p.member_values("InstanceIds");
    let max = p.u32("MaxRecords", 1, 50)?.unwrap_or(50);
    let (xml, _) = c.read(|st| {
        let group = st.asg.as_ref().map(|a| a.name.clone()).unwrap_or_default();
        let instances: Vec<&Ec2Instance> = st
            .group_instances()
            .into_iter()
            .filter(|i| ids.is_empty() || ids.contains(&i.id))
            .collect();
        let (page, next) = match paginate(&instances, max, p.get("NextToken")) {
            Ok(v) => v,
            Err(e) => return (Err(e), ()),
        };
        let mut x = Xml::new();
        x.list("AutoScalingInstances", "member", page, |x, i| {
            instance_fields(x, st, i);
            x.leaf("AutoScalingGroupName", &group);
        });
        x.opt("NextToken", next);
        (Ok(x), ())
    });
    xml
}

fn refresh_xml(x: &mut Xml, r: &InstanceRefresh) {
    x.leaf("InstanceRefreshId", &r.id)
        .leaf("AutoScalingGroupName", &r.group)
        .leaf("Status", r.status)
        .opt("StatusReason", r.reason.as_deref())
        .time("StartTime", r.start);
    if let Some(end) = r.end {
        x.time("EndTime", end);
    }
    x.leaf("PercentageComplete", r.percentage)
        .leaf("InstancesToUpdate", r.instances_to_update())
        .el("Preferences", |x| {
            let p = &r.prefs;
            x.leaf("MinHealthyPercentage", p.min_healthy)
                .leaf("MaxHealthyPercentage", p.max_healthy)
                .opt("InstanceWarmup", p.warmup)
                .list("CheckpointPercentages", "member", &p.checkpoints, |x, c| {
                    x.text(&c.to_string());
                })
                .leaf("CheckpointDelay", p.checkpoint_delay)
                .leaf("SkipMatching", p.skip_matching)
                .leaf("AutoRollback", p.auto_rollback)
                .leaf("ScaleInProtectedInstances", p.scale_in_protected.as_str())
                .leaf("StandbyInstances", p.standby.as_str())
                .leaf("BakeTime", p.bake_time);
        })
        .leaf("Strategy", "Rolling");
    if let Some((name, version)) = &r.desired {
        x.el("DesiredConfiguration", |x| {
            x.el("LaunchTemplate", |x| {
                x.leaf("LaunchTemplateName", name).leaf("Version", version);
            });
        });
    }
    if let Some(reason) = &r.rollback_reason {
        x.el("RollbackDetails", |x| {
            x.leaf("RollbackReason", reason)
                .leaf("InstancesToUpdateOnRollback", r.instances_to_update())
                .leaf("PercentageCompleteOnRollback", r.percentage);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(form: &str) -> Result<RefreshPreferences, ApiError> {
        preferences(&Params::parse(&[form.as_bytes()]))
    }

    #[test]
    fn refresh_preferences_default_as_the_api_does() {
        // API_RefreshPreferences: ScaleInProtectedInstances and StandbyInstances default to Wait
        // (the console and the Terraform provider default to Ignore).
        let p = prefs("").unwrap();
        assert_eq!(p, RefreshPreferences::default());
        assert_eq!(
            (
                p.min_healthy,
                p.max_healthy,
                p.checkpoint_delay,
                p.bake_time
            ),
            (90, 100, 3600, 0)
        );
        assert_eq!(p.scale_in_protected.as_str(), "Wait");
        assert_eq!(p.standby.as_str(), "Wait");
        assert_eq!(p.warmup, None);
    }

    #[test]
    fn refresh_preferences_take_the_api_ranges_and_refuse_one_past_them() {
        // (member, AWS name in errors, lowest, highest) per the RefreshPreferences reference.
        let ranges = [
            (
                "MinHealthyPercentage",
                "preferences.minHealthyPercentage",
                0,
                100,
            ),
            (
                "MaxHealthyPercentage",
                "preferences.maxHealthyPercentage",
                100,
                200,
            ),
            (
                "InstanceWarmup",
                "preferences.instanceWarmup",
                0,
                2_147_483_647,
            ),
            ("CheckpointDelay", "preferences.checkpointDelay", 0, 172_800),
            ("BakeTime", "preferences.bakeTime", 0, 172_800),
        ];
        for (name, member, lo, hi) in ranges {
            for ok in [lo, hi] {
                assert!(prefs(&format!("{name}={ok}")).is_ok(), "{name}={ok}");
            }
            let past = i64::from(hi) + 1;
            let e = prefs(&format!("{name}={past}")).unwrap_err();
            assert_eq!(e.code, "ValidationError", "{name}={past}");
            assert!(
                e.message.contains(member)
                    && e.message.contains(&format!("less than or equal to {hi}")),
                "{name}={past}: {}",
                e.message
            );
            if lo > 0 {
                let e = prefs(&format!("{name}={}", lo - 1)).unwrap_err();
                assert!(e.message.contains(member), "{}", e.message);
            }
            let e = prefs(&format!("{name}=-1")).unwrap_err();
            assert_eq!(e.code, "ValidationError");
        }
        let e = prefs("ScaleInProtectedInstances=Replace").unwrap_err();
        assert!(
            e.message.contains("preferences.scaleInProtectedInstances"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("[Refresh, Ignore, Wait]"),
            "{}",
            e.message
        );
        let e = prefs("StandbyInstances=Refresh").unwrap_err();
        assert!(
            e.message.contains("preferences.standbyInstances"),
            "{}",
            e.message
        );
        for ok in ["Refresh", "Ignore", "Wait"] {
            let p = prefs(&format!("ScaleInProtectedInstances={ok}")).unwrap();
            assert_eq!(p.scale_in_protected.as_str(), ok);
        }
        for ok in ["Terminate", "Ignore", "Wait"] {
            assert_eq!(
                prefs(&format!("StandbyInstances={ok}"))
                    .unwrap()
                    .standby
                    .as_str(),
                ok
            );
        }
    }
}
