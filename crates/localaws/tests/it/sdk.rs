//! Every emulated Auto Scaling, ELBv2 and ECS operation through the official Rust SDK clients,
//! error cases matched with the SDK's typed errors, one behaviour per test (a module per
//! service); here, the wire protocols' edge cases over raw HTTP and the ECS scheduler's answers
//! to tasks that fail their health checks or fail to start.

mod autoscaling; // the group, capacity, a refresh, its preferences, activities, lifecycle hooks
mod ecs; // the cluster, task definitions, a rolling update, a draining container instance
mod elbv2; // load balancers, listeners, target groups, targets, weighted forwards

use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, PortMapping};

use crate::util::{Fleet, fleet_stack, rolling_stack};
use ecs::service_tasks;

/// POSTs `body` with `headers` to the API and returns (status, headers, body).
async fn raw(
    endpoint: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let uri: http::Uri = endpoint.parse().unwrap();
    let stream = tokio::net::TcpStream::connect(uri.authority().unwrap().as_str())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post("/").header("host", uri.authority().unwrap().as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(
            req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_edge_cases_are_client_errors_never_crashes() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let ep = fleet.la.endpoint();
    let form = ("content-type", "application/x-www-form-urlencoded");
    let json = ("content-type", "application/x-amz-json-1.1");

    // Unknown operations: 400 naming them, never 500.
    let (s, h, b) = raw(
        &ep,
        &[form],
        b"Action=DeleteAutoScalingGroup&Version=2011-01-01".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b.contains("<Code>InvalidAction</Code>") && b.contains("DeleteAutoScalingGroup"),
        "{b}"
    );
    assert!(h.contains_key("x-amzn-requestid"));
    let (s, _, b) = raw(
        &ep,
        &[
            json,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.DeleteCluster",
            ),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b.contains("UnknownOperationException") && b.contains("DeleteCluster"),
        "{b}"
    );
    let (s, _, b) = raw(
        &ep,
        &[json, ("x-amz-target", "Nope_2020.Op")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 400, "{b}");

    // Malformed bodies.
    let (s, h, b) = raw(
        &ep,
        &[
            json,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListTasks",
            ),
        ],
        b"{\"cluster\": ".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("SerializationException"), "{b}");
    assert_eq!(h["x-amzn-errortype"], "SerializationException");
    let (s, _, b) = raw(
        &ep,
        &[
            json,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListTasks",
            ),
        ],
        b"[1,2]".to_vec(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, _, b) = raw(
        &ep,
        &[
            json,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListTasks",
            ),
        ],
        br#"{"cluster": 5}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b.contains("InvalidParameterException") && b.contains("cluster"),
        "{b}"
    );
    let (s, _, b) = raw(
        &ep,
        &[form],
        b"Action=DescribeAutoScalingGroups&Version=1999-01-01".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("unknown API version"), "{b}");
    let (s, _, b) = raw(&ep, &[form], b"%%%&&&==\xff\xfe".to_vec()).await;
    assert_eq!(s, 400, "{b}");
    let (s, _, b) = raw(
        &ep,
        &[("content-type", "text/plain")],
        b"Action=X&Version=2011-01-01".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("UnsupportedMediaType"), "{b}");
    let (s, _, b) = raw(&ep, &[form], b"Version=2011-01-01".to_vec()).await;
    assert_eq!(s, 400);
    assert!(b.contains("MissingAction"), "{b}");

    // Missing and invalid parameters name the parameter.
    let (s, _, b) = raw(
        &ep,
        &[form],
        b"Action=SetDesiredCapacity&Version=2011-01-01&AutoScalingGroupName=demo-asg".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("DesiredCapacity"), "{b}");
    let (s, _, b) = raw(
        &ep,
        &[form],
        b"Action=SetDesiredCapacity&Version=2011-01-01&AutoScalingGroupName=demo-asg&DesiredCapacity=many".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("DesiredCapacity") && b.contains("many"), "{b}");
    let (s, _, b) = raw(
        &ep,
        &[form],
        b"Action=DescribeScalingActivities&Version=2011-01-01&NextToken=zzz".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("InvalidNextToken"), "{b}");

    // Empty lists are empty, not errors.
    let (s, _, b) = raw(
        &ep,
        &[form],
        b"Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=nope"
            .to_vec(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(b.contains("<AutoScalingGroups></AutoScalingGroups>"), "{b}");

    // Huge bodies are refused before they are read whole.
    let (s, _, b) = raw(&ep, &[form], vec![b'a'; localaws::api::MAX_BODY + 1]).await;
    assert_eq!(s, 413, "{b}");

    // The service still answers.
    let groups = fleet
        .aws
        .asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap();
    assert_eq!(groups.auto_scaling_groups().len(), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_health_checks_gate_and_replace_tasks() {
    use aws_sdk_ecs::types::HealthCheck;
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    let deadline = fleet.refresh_deadline();
    // The default task definition checks itself with `/server healthcheck`, as the image does.
    for t in &service_tasks(ecs).await {
        assert_eq!(
            t.health_status().map(|h| h.as_str()),
            Some("HEALTHY"),
            "a ready fleet has passed its container health checks"
        );
    }
    // A release whose container health check always fails: its tasks are stopped and replaced,
    // and the old ones keep serving (minimum healthy 100 %).
    ecs.register_task_definition()
        .family("demo-web")
        .container_definitions(
            web_container(0)
                .environment(
                    KeyValuePair::builder()
                        .name("APP_VERSION")
                        .value("v2")
                        .build(),
                )
                .health_check(
                    HealthCheck::builder()
                        .command("CMD-SHELL")
                        .command("exit 1")
                        .interval(5)
                        .retries(2)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition("demo-web:2")
        .send()
        .await
        .unwrap();
    assert!(
        fleet
            .la
            .control()
            .wait_until(deadline, |st| {
                st.tasks.values().any(|t| {
                    t.task_definition.1 == 2
                        && t.stopped_reason.as_deref()
                            == Some("Task failed container health checks")
                })
            })
            .await,
        "no task of revision 2 was stopped for failing its container health check"
    );
    let old_serving = fleet.la.control().read(|st| {
        st.tasks
            .values()
            .filter(|t| {
                t.task_definition.1 == 1 && t.last_status == localaws::control::TaskStatus::Running
            })
            .count()
    });
    assert_eq!(old_serving, 3, "the old tasks keep serving");
    let tg = fleet.la.plane().target_group("demo-tg-blue").unwrap();
    let healthy = tg
        .describe()
        .iter()
        .filter(|t| t.health == localaws::TargetHealth::Healthy)
        .count();
    assert!(healthy >= 3, "{:?}", tg.describe());
    fleet.stop().await;
}

/// The rolling stack's container `web` (image `server`, port 8080) on host port `port`.
fn web_container(port: i32) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
    ContainerDefinition::builder()
        .name("web")
        .image("server")
        .stop_timeout(10)
        .port_mappings(
            PortMapping::builder()
                .container_port(8080)
                .host_port(port)
                .build(),
        )
}

/// Registers the next revision of `demo-web`: [`web_container`] on host port `port`.
async fn register_web(ecs: &aws_sdk_ecs::Client, port: i32) -> String {
    let out = ecs
        .register_task_definition()
        .family("demo-web")
        .container_definitions(web_container(port).build())
        .send()
        .await
        .unwrap();
    let td = out.task_definition().unwrap();
    format!("demo-web:{}", td.revision())
}

/// ECS's service throttle logic: a service whose tasks keep failing to start (a revision with a
/// static host port that another program, not a task, holds on every instance: placement
/// cannot see it, the start fails, as the agent's does with "port is already allocated"; the
/// service scaled to 1, so each attempt is one task) is retried ever more slowly, never given
/// up, and says so in its events; a new task definition ends the throttling at once. Without it,
/// localaws retried the start thousands of times a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_to_start_is_retried_ever_more_slowly_until_a_new_revision() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    let clock = fleet.la.plane().clock();
    let mut events = fleet.la.plane().events().subscribe();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _held: Vec<std::net::TcpListener> = fleet
        .la
        .plane()
        .instances()
        .iter()
        .map(|i| std::net::TcpListener::bind((i.ip, port)).unwrap())
        .collect();
    let static_port = register_web(ecs, i32::from(port)).await;
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition(&static_port)
        .desired_count(1)
        .send()
        .await
        .unwrap();
    // The throttle is said once, at the second failure in a row.
    let said = "is unable to consistently start tasks successfully.";
    let mut said_at = None;
    let deadline = tokio::time::Instant::now() + fleet.refresh_deadline();
    while said_at.is_none() {
        let described = ecs
            .describe_services()
            .cluster("demo-cluster")
            .services("demo-svc")
            .send()
            .await
            .unwrap();
        if described.services()[0]
            .events()
            .iter()
            .any(|e| e.message().is_some_and(|m| m.ends_with(said)))
        {
            said_at = Some(tokio::time::Instant::now());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service never said it was throttled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Over the next 10 simulated minutes the waits double from 5 s (10 and 20 s past the second
    // failure, then 40, 80, 160, 320): a handful of attempts, never none.
    while events.try_recv().is_ok() {}
    let window = clock.secs(600);
    let mut failed = 0;
    let end = tokio::time::Instant::now() + window;
    while let Ok(got) = tokio::time::timeout_at(end, events.recv()).await {
        match got {
            Ok(e) if e.kind.to_string().contains("failed to start") => failed += 1,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => failed += n,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    assert!(
        (1..=8).contains(&failed),
        "{failed} failed starts in 10 simulated minutes (expected a few, growing apart)"
    );
    // The service keeps trying: its waits are long now, but a new revision (dynamic host
    // ports) is launched before the current wait would have ended.
    let dynamic = register_web(ecs, 0).await;
    let until = fleet
        .la
        .control()
        .read(|st| st.services["demo-svc"].throttle.until);
    let until = until.expect("the service is throttled");
    assert!(
        until > tokio::time::Instant::now() + clock.secs(20),
        "the wait ends too soon to tell a reset from it"
    );
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition(&dynamic)
        .send()
        .await
        .unwrap();
    let remaining = until.saturating_duration_since(tokio::time::Instant::now());
    let revision: u32 = dynamic.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        fleet
            .la
            .control()
            .wait_until(remaining, |st| st
                .tasks
                .values()
                .any(|t| t.task_definition.1 == revision))
            .await,
        "no task of {dynamic} launched before the throttle's wait ended"
    );
    assert!(said_at.is_some());
    fleet.stop().await;
}
