//! Property tests: every parser of untrusted input — the stack file, the awsQuery form, the JSON
//! input and task definitions, and the API endpoint itself over HTTP — takes arbitrary input
//! without a panic, with output bounded by the input, and (the endpoint) answers every request
//! with a client error or a success, never a 5xx, never hanging.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use localaws::api::json::Input;
use localaws::api::query::Params;
use localaws::api::{autoscaling, ec2, ecs, elbv2};
use localaws::{Options, Stack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::util::{server_bin, test_stack};

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((member_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Member names the ECS operations and task definitions read, and arbitrary ones.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "cluster",
            "clusters",
            "service",
            "services",
            "serviceName",
            "desiredCount",
            "taskDefinition",
            "family",
            "networkMode",
            "containerDefinitions",
            "name",
            "image",
            "essential",
            "portMappings",
            "containerPort",
            "hostPort",
            "protocol",
            "environment",
            "value",
            "stopTimeout",
            "healthCheck",
            "command",
            "interval",
            "cpu",
            "memory",
            "tasks",
            "status",
            "desiredStatus",
            "containerInstance",
            "containerInstances",
            "deploymentConfiguration",
            "maximumPercent",
            "minimumHealthyPercent",
            "nextToken",
            "forceNewDeployment",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

#[test]
fn stack_parser_takes_arbitrary_text() {
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = Stack::parse(&text, "fuzz") {
                // The message names the problem; it never copies more than the input.
                prop_assert!(e.to_string().len() <= 2 * text.len() + 4096);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn stack_parser_takes_arbitrary_values_in_a_valid_stack() {
    // The default stack with one line's value replaced: reaches validation, not only TOML.
    let base = stack::DEFAULT_STACK;
    let lines: Vec<&str> = base.lines().collect();
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,40}".prop_map(|s| format!("{s:?}")),
        "[ -~]{0,40}",
        Just("\"\"".to_owned()),
        Just("0".to_owned()),
        Just("4294967295".to_owned()),
        Just("1e400".to_owned()),
        Just("nan".to_owned()),
    ];
    let mut runner = TestRunner::new(config());
    runner
        .run(&(0..lines.len(), value), |(i, value)| {
            let mut text = String::new();
            for (j, line) in lines.iter().enumerate() {
                match line.split_once(" = ") {
                    Some((key, _)) if j == i => text.push_str(&format!("{key} = {value}")),
                    _ => text.push_str(line),
                }
                text.push('\n');
            }
            if let Err(e) = Stack::parse(&text, "fuzz") {
                prop_assert!(e.to_string().len() <= 2 * text.len() + 4096);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn query_form_parser_takes_arbitrary_bytes() {
    let names = prop::sample::select(vec![
        "AutoScalingGroupName",
        "AutoScalingGroupNames.member.1",
        "DesiredConfiguration.LaunchTemplate.Version",
        "Preferences.MinHealthyPercentage",
        "Targets.member.1.Id",
        "Targets.member.1.Port",
        "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
        "LaunchTemplateVersion.1",
        "x",
    ]);
    let mut runner = TestRunner::new(config());
    runner
        .run(
            &(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..3),
                names,
                -3i64..3,
            ),
            |(parts, name, n)| {
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let input: usize = parts.iter().map(Vec::len).sum();
                let p = Params::parse(&refs);
                // Decoding never grows the input beyond U+FFFD (3 bytes) per invalid byte.
                let _ = p.get(name);
                let _ = p.req(name);
                let _ = p.num(name, n, n.saturating_mul(1000));
                let _ = p.u32(name, 0, 100);
                let _ = p.bool(name);
                let _ = p.has(name);
                for prefix in [name, "Targets", "DefaultActions", "LaunchTemplateVersion"] {
                    let nested = p.nested(prefix);
                    let members = p.members(prefix);
                    let values = p.member_values(prefix);
                    let items = p.items(prefix);
                    let item_values = p.item_values(prefix);
                    prop_assert!(members.len() + items.len() <= input + 1);
                    prop_assert!(values.iter().map(String::len).sum::<usize>() <= 3 * input);
                    prop_assert!(item_values.iter().map(String::len).sum::<usize>() <= 3 * input);
                    let _ = nested.get("x");
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn json_input_and_task_definitions_take_arbitrary_values() {
    let mut runner = TestRunner::new(config());
    runner
        .run(&(json_value(), member_name()), |(value, name)| {
            let _ = ecs::task_definition_from_json(&value);
            let mut wrapped = serde_json::Map::new();
            wrapped.insert("containerDefinitions".into(), value.clone());
            wrapped.insert("family".into(), Value::from("web"));
            let _ = ecs::task_definition_from_json(&Value::Object(wrapped));
            if let Value::Object(map) = value {
                let input = Input(map);
                let _ = input.str(&name);
                let _ = input.req(&name);
                let _ = input.int(&name, -5, 5);
                let _ = input.u32(&name, 0, 100);
                let _ = input.strings(&name);
                let _ = input.bool(&name);
                if let Ok(Some(inner)) = input.object(&name) {
                    let _ = inner.str("name");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn json_bodies_of_arbitrary_bytes_never_panic() {
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..1024), |bytes| {
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                let _ = ecs::task_definition_from_json(&value);
            }
            Ok(())
        })
        .unwrap();
}

/// One HTTP request to the API: headers and a body.
#[derive(Debug, Clone)]
struct ApiRequest {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Whether the request names a real operation of a real service (then 2xx is possible).
    names_an_operation: bool,
}

fn query_request() -> impl Strategy<Value = ApiRequest> {
    let ops = prop::sample::select(vec![
        (autoscaling::VERSION, "DescribeAutoScalingGroups"),
        (autoscaling::VERSION, "SetDesiredCapacity"),
        (autoscaling::VERSION, "UpdateAutoScalingGroup"),
        (autoscaling::VERSION, "StartInstanceRefresh"),
        (autoscaling::VERSION, "DescribeInstanceRefreshes"),
        (autoscaling::VERSION, "CancelInstanceRefresh"),
        (autoscaling::VERSION, "RollbackInstanceRefresh"),
        (autoscaling::VERSION, "CompleteLifecycleAction"),
        (autoscaling::VERSION, "DescribeScalingActivities"),
        (elbv2::VERSION, "DescribeLoadBalancers"),
        (elbv2::VERSION, "DescribeTargetGroups"),
        (elbv2::VERSION, "DescribeTargetHealth"),
        (elbv2::VERSION, "DescribeListeners"),
        (elbv2::VERSION, "DescribeRules"),
        (elbv2::VERSION, "ModifyListener"),
        (ec2::VERSION, "CreateLaunchTemplateVersion"),
        (ec2::VERSION, "DescribeLaunchTemplates"),
        (ec2::VERSION, "DescribeLaunchTemplateVersions"),
        ("2099-01-01", "Nope"),
    ]);
    let names = prop::sample::select(vec![
        "AutoScalingGroupName",
        "AutoScalingGroupNames.member.1",
        "DesiredCapacity",
        "MinSize",
        "MaxSize",
        "HonorCooldown",
        "DesiredConfiguration.LaunchTemplate.LaunchTemplateName",
        "DesiredConfiguration.LaunchTemplate.Version",
        "Preferences.MinHealthyPercentage",
        "Preferences.InstanceWarmup",
        "Preferences.CheckpointPercentages.member.1",
        "InstanceRefreshIds.member.1",
        "LifecycleHookName",
        "LifecycleActionResult",
        "InstanceId",
        "TargetGroupArn",
        "TargetGroupArns.member.1",
        "LoadBalancerArns.member.1",
        "Names.member.1",
        "ListenerArn",
        "Port",
        "Protocol",
        "DefaultActions.member.1.Type",
        "DefaultActions.member.1.TargetGroupArn",
        "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn",
        "DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
        "Targets.member.1.Id",
        "Targets.member.1.Port",
        "LaunchTemplateName",
        "LaunchTemplateId",
        "SourceVersion",
        "LaunchTemplateData.ImageId",
        "LaunchTemplateVersion.1",
        "MaxRecords",
        "NextToken",
    ]);
    let value = prop_oneof![
        ".{0,24}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("demo-asg".to_owned()),
        Just("true".to_owned()),
    ];
    (
        ops,
        prop::collection::vec((names, value), 0..8),
        prop::collection::vec(any::<u8>(), 0..256),
        any::<bool>(),
    )
        .prop_map(|((version, action), params, tail, with_tail)| {
            let mut body = format!("Action={action}&Version={version}");
            for (k, v) in params {
                body.push('&');
                body.push_str(k);
                body.push('=');
                body.extend(form_urlencoded::byte_serialize(v.as_bytes()));
            }
            let mut body = body.into_bytes();
            if with_tail {
                body.push(b'&');
                body.extend(tail);
            }
            ApiRequest {
                headers: vec![(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                )],
                body,
                names_an_operation: version != "2099-01-01",
            }
        })
}

fn json_request() -> impl Strategy<Value = ApiRequest> {
    let ops = prop::sample::select(vec![
        "RegisterTaskDefinition",
        "DescribeTaskDefinition",
        "DescribeClusters",
        "DescribeServices",
        "UpdateService",
        "ListTasks",
        "DescribeTasks",
        "ListContainerInstances",
        "DescribeContainerInstances",
        "UpdateContainerInstancesState",
        "Nope",
    ]);
    let body = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..512),
    ];
    (ops, body, any::<bool>()).prop_map(|(op, body, prefix)| {
        let target = if prefix {
            format!("{}.{op}", ecs::TARGET_PREFIX)
        } else {
            format!("Other_20200101.{op}")
        };
        ApiRequest {
            headers: vec![
                ("x-amz-target", target),
                ("content-type", localaws::api::json::CONTENT_TYPE.into()),
            ],
            body,
            names_an_operation: prefix && op != "Nope",
        }
    })
}

fn raw_request() -> impl Strategy<Value = ApiRequest> {
    let auth = prop::sample::select(vec![
        "",
        "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/elasticloadbalancing/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/autoscaling/aws4_request",
        "AWS4-HMAC-SHA256 Credential=",
    ]);
    (auth, prop::collection::vec(any::<u8>(), 0..1024)).prop_map(|(auth, body)| {
        let mut headers = vec![(
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        )];
        if !auth.is_empty() {
            headers.push(("authorization", auth.to_owned()));
        }
        ApiRequest {
            headers,
            body,
            names_an_operation: false,
        }
    })
}

async fn send(addr: &str, req: &ApiRequest) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut builder = http::Request::post("/").header("host", addr);
    for (k, v) in &req.headers {
        builder = builder.header(*k, v);
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| e.to_string())?;
    let res = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if body.len() > localaws::api::MAX_BODY {
        return Err(format!("{} byte answer", body.len()));
    }
    Ok(status)
}

#[test]
fn api_answers_arbitrary_requests_with_4xx_never_5xx_never_hanging() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let la = rt.block_on(async {
        let mut options = Options::new(dir.path());
        options.ephemeral_ports = true;
        options.server = Some((server_bin(), Vec::new()));
        localaws::Localaws::start(test_stack(), options, 0)
            .await
            .expect("localaws")
    });
    let addr = la.endpoint().trim_start_matches("http://").to_owned();
    let mut runner = TestRunner::new(config());
    let strategy = prop_oneof![query_request(), json_request(), raw_request()];
    // (2xx, 4xx): the generator must reach operations, not only the protocol checks.
    let seen = std::cell::Cell::new((0u32, 0u32));
    let result = runner.run(&strategy, |req| {
        let status = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), send(&addr, &req)).await
            })
            .map_err(|_| TestCaseError::fail(format!("no answer within 10 s to {req:?}")))?
            .map_err(|e| TestCaseError::fail(format!("{e}: {req:?}")))?;
        prop_assert!(status < 500, "{status} for {req:?}");
        let (ok, client) = seen.get();
        seen.set(if status < 300 {
            (ok + 1, client)
        } else {
            (ok, client + 1)
        });
        if !req.names_an_operation {
            prop_assert!((400..500).contains(&status), "{status} for {req:?}");
        }
        Ok(())
    });
    // A body over the limit is refused (413), not buffered.
    let big = ApiRequest {
        headers: vec![("content-type", "application/x-www-form-urlencoded".into())],
        body: vec![b'a'; localaws::api::MAX_BODY + 1],
        names_an_operation: false,
    };
    let big = rt.block_on(send(&addr, &big));
    rt.block_on(la.shutdown());
    result.unwrap();
    assert_eq!(big, Ok(413));
    let (ok, client) = seen.get();
    eprintln!("arbitrary API requests: {ok} answered 2xx, {client} 4xx, none 5xx");
    assert!(
        ok > 0 && client > 0,
        "{ok} answers 2xx and {client} 4xx: the requests never reached an operation"
    );
}
