//! Elastic Load Balancing v2 (awsQuery, `Version=2015-12-01`): load balancers, listeners and
//! their weighted forwards, target groups and target health, over the real data plane.
//!
//! ARNs are derived from names (stable across runs). Targets are reported as AWS reports them
//! for ECS on EC2 in bridge mode: the instance id and the dynamic host port.

use std::net::{IpAddr, SocketAddr};

use super::query::{Params, Xml};
use super::{ApiError, unsupported};
use crate::arn::{listener_arn, load_balancer_arn, rule_arn, target_group_arn};
use crate::control::Control;
use crate::control::elbv2::{ListenerView, TargetGroupView};
use stack::WeightedTargetGroup;

/// API version.
pub const VERSION: &str = "2015-12-01";
/// XML namespace.
pub const XMLNS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// Handles one action: one function per operation.
pub fn handle(c: &Control, action: &str, p: &Params) -> Result<Xml, ApiError> {
    match action {
        "DescribeLoadBalancers" => describe_load_balancers(c, p),
        "DescribeListeners" => describe_listeners(c, p),
        "DescribeRules" => describe_rules(c, p),
        "DescribeTargetGroups" => describe_target_groups(c, p),
        "DescribeTargetHealth" => describe_target_health(c, p),
        "ModifyListener" => modify_listener(c, p),
        "RegisterTargets" => register_targets(c, p),
        "DeregisterTargets" => deregister_targets(c, p),
        other => Err(unsupported(
            "Elastic Load Balancing",
            other,
            "InvalidAction",
        )),
    }
}

fn tg_not_found(what: &str) -> ApiError {
    ApiError::new(
        "TargetGroupNotFound",
        format!("One or more target groups not found: {what}"),
    )
}

fn lb_not_found(what: &str) -> ApiError {
    ApiError::new(
        "LoadBalancerNotFound",
        format!("One or more load balancers not found: {what}"),
    )
}

/// The name of the target group whose ARN is `arn`.
fn target_group(c: &Control, arn: &str) -> Result<String, ApiError> {
    c.target_groups()
        .into_iter()
        .map(|g| g.name)
        .find(|name| target_group_arn(name) == arn)
        .ok_or_else(|| tg_not_found(arn))
}

/// The listener whose ARN is `arn`.
fn listener(c: &Control, arn: &str) -> Result<ListenerView, ApiError> {
    c.listeners()
        .into_iter()
        .find(|l| listener_arn(&l.load_balancer, &l.name) == arn)
        .ok_or_else(|| {
            ApiError::new(
                "ListenerNotFound",
                format!("One or more listeners not found: {arn}"),
            )
        })
}

fn load_balancer_names(c: &Control) -> Vec<String> {
    let mut names: Vec<String> = c.load_balancers().into_iter().map(|l| l.name).collect();
    names.dedup();
    names
}

/// Resolves a `TargetDescription` (instance id and port) to an address.
fn target_addr(c: &Control, t: &Params) -> Result<SocketAddr, ApiError> {
    let id = t
        .get("Id")
        .ok_or_else(|| ApiError::validation("Targets.member.N.Id is required"))?;
    let port = t.u32("Port", 1, 65535)?.ok_or_else(|| {
        ApiError::validation(format!(
            "a port is required for target {id}: the target groups here have no default port"
        ))
    })?;
    if let Ok(ip) = id.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port as u16));
    }
    let ip = c.live_instance_ip(id).ok_or_else(|| {
        ApiError::new(
            "InvalidTarget",
            format!(
                "The following targets are not in a running state and cannot be registered: '{id}'"
            ),
        )
    })?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// `Protocol`, and for HTTPS the security policy (TLS 1.2 and 1.3, as localaws's rustls offers).
fn listener_protocol_xml(x: &mut Xml, l: &ListenerView) {
    x.leaf("Protocol", l.protocol);
    if l.https {
        x.leaf("SslPolicy", "ELBSecurityPolicy-TLS13-1-2-2021-06");
    }
}

fn forward_xml(x: &mut Xml, weights: &[(String, u32)]) {
    x.list("DefaultActions", "member", [()], |x, ()| {
        action_xml(x, weights);
    });
}

fn action_xml(x: &mut Xml, weights: &[(String, u32)]) {
    x.leaf("Type", "forward");
    if let [(only, _)] = weights {
        x.leaf("TargetGroupArn", target_group_arn(only));
    }
    x.leaf("Order", 1).el("ForwardConfig", |x| {
        x.list("TargetGroups", "member", weights, |x, (name, w)| {
            x.leaf("TargetGroupArn", target_group_arn(name))
                .leaf("Weight", w);
        })
        .el("TargetGroupStickinessConfig", |x| {
            x.leaf("Enabled", false);
        });
    });
}

fn listener_xml(x: &mut Xml, l: &ListenerView) {
    x.leaf("ListenerArn", listener_arn(&l.load_balancer, &l.name))
        .leaf("LoadBalancerArn", load_balancer_arn(&l.load_balancer))
        .leaf("Port", l.port);
    listener_protocol_xml(x, l);
    forward_xml(x, &l.weights);
}

fn describe_load_balancers(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let arns = p.member_values("LoadBalancerArns");
    let names = p.member_values("Names");
    let all = load_balancer_names(c);
    for n in &names {
        if !all.contains(n) {
            return Err(lb_not_found(n));
        }
    }
    for a in &arns {
        if !all.iter().any(|n| &load_balancer_arn(n) == a) {
            return Err(lb_not_found(a));
        }
    }
    let mut x = Xml::new();
    x.list(
        "LoadBalancers",
        "member",
        c.load_balancers().into_iter().filter(|lb| {
            (names.is_empty() && arns.is_empty())
                || names.contains(&lb.name)
                || arns.contains(&load_balancer_arn(&lb.name))
        }),
        |x, lb| {
            x.leaf("LoadBalancerArn", load_balancer_arn(&lb.name))
                .leaf("DNSName", lb.address)
                .leaf("CanonicalHostedZoneId", "Z35SXDOTRQ7X7K")
                .leaf("LoadBalancerName", &lb.name)
                .leaf("Scheme", "internet-facing")
                .leaf("VpcId", "vpc-00000000000000000")
                .el("State", |x| {
                    x.leaf("Code", "active");
                })
                .leaf("Type", "application")
                .leaf("IpAddressType", "ipv4");
        },
    );
    Ok(x)
}

fn describe_listeners(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let lb = p.get("LoadBalancerArn");
    let arns = p.member_values("ListenerArns");
    if lb.is_none() && arns.is_empty() {
        return Err(ApiError::validation(
            "either LoadBalancerArn or ListenerArns is required",
        ));
    }
    if let Some(lb) = lb
        && !load_balancer_names(c)
            .iter()
            .any(|n| load_balancer_arn(n) == lb)
    {
        return Err(lb_not_found(lb));
    }
    for a in &arns {
        listener(c, a)?;
    }
    let mut x = Xml::new();
    x.list(
        "Listeners",
        "member",
        c.listeners().into_iter().filter(|l| {
            lb.is_some_and(|a| load_balancer_arn(&l.load_balancer) == a)
                || arns.contains(&listener_arn(&l.load_balancer, &l.name))
        }),
        |x, l| listener_xml(x, &l),
    );
    Ok(x)
}

/// Each listener has one rule here: its default action.
fn describe_rules(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let arn = p.get("ListenerArn");
    let rules = p.member_values("RuleArns");
    let listeners: Vec<ListenerView> = match arn {
        Some(a) => vec![listener(c, a)?],
        None if !rules.is_empty() => {
            let found: Vec<_> = c
                .listeners()
                .into_iter()
                .filter(|l| rules.contains(&rule_arn(&l.load_balancer, &l.name)))
                .collect();
            if found.len() != rules.len() {
                return Err(ApiError::new("RuleNotFound", "One or more rules not found"));
            }
            found
        }
        None => {
            return Err(ApiError::validation(
                "either ListenerArn or RuleArns is required",
            ));
        }
    };
    let mut x = Xml::new();
    x.list("Rules", "member", &listeners, |x, l| {
        x.leaf("RuleArn", rule_arn(&l.load_balancer, &l.name))
            .leaf("Priority", "default")
            .el("Conditions", |_| {})
            .list("Actions", "member", [()], |x, ()| {
                action_xml(x, &l.weights);
            })
            .leaf("IsDefault", true);
    });
    Ok(x)
}

fn describe_target_groups(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let arns = p.member_values("TargetGroupArns");
    let names = p.member_values("Names");
    let lb = p.get("LoadBalancerArn");
    let groups: Vec<TargetGroupView> = c.target_groups();
    for n in &names {
        if !groups.iter().any(|g| &g.name == n) {
            return Err(tg_not_found(n));
        }
    }
    for a in &arns {
        if !groups.iter().any(|g| &target_group_arn(&g.name) == a) {
            return Err(tg_not_found(a));
        }
    }
    let mut x = Xml::new();
    x.list(
        "TargetGroups",
        "member",
        groups.iter().filter(|g| {
            let by_lb =
                lb.is_none_or(|a| g.load_balancers.iter().any(|n| load_balancer_arn(n) == a));
            by_lb
                && ((names.is_empty() && arns.is_empty())
                    || names.contains(&g.name)
                    || arns.contains(&target_group_arn(&g.name)))
        }),
        |x, g| {
            x.leaf("TargetGroupArn", target_group_arn(&g.name))
                .leaf("TargetGroupName", &g.name)
                .leaf("Protocol", "HTTP")
                .leaf("Port", g.port.unwrap_or(80))
                .leaf("VpcId", "vpc-00000000000000000")
                .leaf("HealthCheckProtocol", "HTTP")
                .leaf("HealthCheckPort", "traffic-port")
                .leaf("HealthCheckEnabled", true)
                .leaf("HealthCheckIntervalSeconds", g.interval_secs)
                .leaf("HealthCheckTimeoutSeconds", g.timeout_secs)
                .leaf("HealthyThresholdCount", g.healthy_threshold)
                .leaf("UnhealthyThresholdCount", g.unhealthy_threshold)
                .leaf("HealthCheckPath", &g.path)
                .el("Matcher", |x| {
                    x.leaf("HttpCode", &g.matcher);
                })
                .list("LoadBalancerArns", "member", &g.load_balancers, |x, n| {
                    x.text(&load_balancer_arn(n));
                })
                .leaf("TargetType", "instance")
                .leaf("ProtocolVersion", "HTTP1")
                .leaf("IpAddressType", "ipv4");
        },
    );
    Ok(x)
}

fn describe_target_health(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let arn = p.req("TargetGroupArn")?;
    let group = target_group(c, arn)?;
    let wanted: Vec<SocketAddr> = p
        .members("Targets")
        .iter()
        .map(|t| target_addr(c, t))
        .collect::<Result<_, _>>()?;
    let targets = c.target_health(&group).ok_or_else(|| tg_not_found(arn))?;
    let mut rows: Vec<(SocketAddr, String, Option<&'static str>)> = targets
        .iter()
        .filter(|t| wanted.is_empty() || wanted.contains(&t.addr))
        .map(|t| (t.addr, t.state.clone(), t.reason))
        .collect();
    for w in &wanted {
        if !targets.iter().any(|t| t.addr == *w) {
            rows.push((*w, "unused".into(), Some("Target.NotRegistered")));
        }
    }
    let mut x = Xml::new();
    x.list(
        "TargetHealthDescriptions",
        "member",
        rows,
        |x, (addr, state, reason)| {
            let id = c
                .instance_at(addr.ip())
                .unwrap_or_else(|| addr.ip().to_string());
            x.el("Target", |x| {
                x.leaf("Id", id).leaf("Port", addr.port());
            })
            .leaf("HealthCheckPort", addr.port())
            .el("TargetHealth", |x| {
                x.leaf("State", &state)
                    .opt("Reason", reason)
                    .opt("Description", reason.map(describe_reason));
            });
        },
    );
    Ok(x)
}

fn modify_listener(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let l = listener(c, p.req("ListenerArn")?)?;
    if p.has("Port") || p.has("Protocol") || p.has("Certificates") {
        return Err(ApiError::validation(
            "localaws listeners keep their port and protocol: only DefaultActions can be modified",
        ));
    }
    let actions = p.members("DefaultActions");
    let [action] = actions.as_slice() else {
        return Err(ApiError::validation(
            "DefaultActions: expected exactly one forward action",
        ));
    };
    if action.get("Type") != Some("forward") {
        return Err(ApiError::validation(format!(
            "unsupported action type {:?}: expected forward",
            action.get("Type").unwrap_or("")
        )));
    }
    let mut weights = Vec::new();
    let groups = action.nested("ForwardConfig").members("TargetGroups");
    if groups.is_empty() {
        let arn = action.req("TargetGroupArn")?;
        weights.push(WeightedTargetGroup {
            target_group: target_group(c, arn)?,
            weight: 1,
        });
    }
    for g in &groups {
        weights.push(WeightedTargetGroup {
            target_group: target_group(c, g.req("TargetGroupArn")?)?,
            weight: g.u32("Weight", 0, 999)?.unwrap_or(1),
        });
    }
    c.set_listener_weights(&l.name, &weights)
        .map_err(ApiError::validation)?;
    let l = listener(c, p.req("ListenerArn")?)?;
    let mut x = Xml::new();
    x.list("Listeners", "member", [()], |x, ()| listener_xml(x, &l));
    Ok(x)
}

/// The target group and the targets (id, address) a `RegisterTargets` or `DeregisterTargets`
/// names.
fn targets_of(c: &Control, p: &Params) -> Result<(String, Vec<(String, SocketAddr)>), ApiError> {
    let group = target_group(c, p.req("TargetGroupArn")?)?;
    let targets = p.members("Targets");
    if targets.is_empty() {
        return Err(ApiError::missing("Targets"));
    }
    let addrs = targets
        .iter()
        .map(|t| target_addr(c, t).map(|a| (t.get("Id").unwrap_or("").to_owned(), a)))
        .collect::<Result<_, _>>()?;
    Ok((group, addrs))
}

fn register_targets(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let (group, addrs) = targets_of(c, p)?;
    for (id, addr) in addrs {
        c.register_target(&group, id, addr)
            .map_err(ApiError::validation)?;
    }
    Ok(Xml::new())
}

fn deregister_targets(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let (group, addrs) = targets_of(c, p)?;
    for (id, addr) in addrs {
        if !c.deregister_target(&group, addr) {
            return Err(ApiError::new(
                "InvalidTarget",
                format!("The following targets are not registered in target group {group}: '{id}'"),
            ));
        }
    }
    Ok(Xml::new())
}

fn describe_reason(reason: &'static str) -> &'static str {
    match reason {
        "Elb.RegistrationInProgress" => "Target registration is in progress",
        "Elb.InitialHealthChecking" => "Initial health checks in progress",
        "Target.ResponseCodeMismatch" => "Health checks failed with these codes",
        "Target.Timeout" => "Request timed out",
        "Target.FailedHealthChecks" => "Health checks failed",
        "Target.DeregistrationInProgress" => "Target deregistration is in progress",
        "Target.NotRegistered" => "Target is not registered to the target group",
        _ => "See the reason code",
    }
}
