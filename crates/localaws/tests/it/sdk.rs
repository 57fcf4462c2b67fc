//! Every emulated Auto Scaling, ELBv2 and ECS operation through the official Rust SDK clients,
//! error cases matched with the SDK's typed errors; and the wire protocols' edge cases over raw
//! HTTP.

use std::time::Duration;

use aws_sdk_autoscaling::types::{DesiredConfiguration, LaunchTemplateSpecification};
use aws_sdk_ecs::types::{ContainerDefinition, ContainerInstanceStatus, KeyValuePair, PortMapping};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetDescription, TargetGroupTuple,
};

use crate::util::{Fleet, fleet_stack, rolling_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scaling_operations() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;

    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-asg")
        .send()
        .await
        .unwrap();
    let g = &groups.auto_scaling_groups()[0];
    assert_eq!(g.auto_scaling_group_name(), Some("demo-asg"));
    assert_eq!(g.desired_capacity(), Some(3));
    assert_eq!(g.health_check_type(), Some("ELB"));
    assert_eq!(g.instances().len(), 3);
    assert!(
        g.instances()
            .iter()
            .all(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
    );
    // An unknown name is an empty list, as on AWS.
    let none = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("nope")
        .send()
        .await
        .unwrap();
    assert!(none.auto_scaling_groups().is_empty());

    let first = g.instances()[0].instance_id().unwrap().to_owned();
    let details = asg
        .describe_auto_scaling_instances()
        .instance_ids(&first)
        .send()
        .await
        .unwrap();
    let d = &details.auto_scaling_instances()[0];
    assert_eq!(d.auto_scaling_group_name(), Some("demo-asg"));
    assert_eq!(d.launch_template().and_then(|l| l.version()), Some("1"));

    // Capacity: out of range is a ValidationError naming the bounds; in range scales.
    let e = asg
        .set_desired_capacity()
        .auto_scaling_group_name("demo-asg")
        .desired_capacity(7)
        .send()
        .await
        .unwrap_err();
    let meta = e.into_service_error();
    assert_eq!(meta.meta().code(), Some("ValidationError"));
    assert!(
        meta.meta().message().unwrap_or("").contains("max"),
        "{meta:?}"
    );
    asg.set_desired_capacity()
        .auto_scaling_group_name("demo-asg")
        .desired_capacity(4)
        .send()
        .await
        .unwrap();
    assert!(
        fleet
            .la
            .control()
            .wait_until(fleet.refresh_deadline(), |st| {
                st.instances
                    .values()
                    .filter(|i| i.lifecycle == localaws::control::Lifecycle::InService)
                    .count()
                    == 4
            })
            .await,
        "the group did not scale out to 4"
    );
    let e = asg
        .set_desired_capacity()
        .auto_scaling_group_name("nope")
        .desired_capacity(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ValidationError")
    );

    // UpdateAutoScalingGroup: a launch template version that does not exist is refused.
    let e = asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("demo-asg")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("demo-lt")
                .version("9")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ValidationError")
    );
    let v2 = fleet.new_version("ami-0ecs000000000002");
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("demo-asg")
        .desired_capacity(3)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("demo-lt")
                .version(v2.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();

    // A refresh without a desired configuration uses the group's (now version 2).
    let id = asg
        .start_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .unwrap()
        .instance_refresh_id
        .unwrap();
    let e = asg
        .start_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_name("demo-lt")
                        .version("1")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(
        e.into_service_error()
            .is_instance_refresh_in_progress_fault()
    );
    let e = asg
        .rollback_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.into_service_error()
            .is_irreversible_instance_refresh_fault(),
        "no desired configuration: nothing to roll back to"
    );
    let r = fleet
        .wait_refresh(&id, |s| {
            s == &aws_sdk_autoscaling::types::InstanceRefreshStatus::Successful
        })
        .await;
    assert_eq!(r.percentage_complete(), Some(100));
    assert_eq!(r.instances_to_update(), Some(0));
    assert_eq!(fleet.versions_in_service(), vec![2, 2, 2]);

    // Preferences are checked as AWS checks them.
    let e = asg
        .start_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .preferences(
            aws_sdk_autoscaling::types::RefreshPreferences::builder()
                .min_healthy_percentage(10)
                .max_healthy_percentage(150)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ValidationError")
    );
    // One past the API reference's maximum is refused, naming the member.
    for (prefs, member) in [
        (
            aws_sdk_autoscaling::types::RefreshPreferences::builder().bake_time(172_801),
            "preferences.bakeTime",
        ),
        (
            aws_sdk_autoscaling::types::RefreshPreferences::builder().checkpoint_delay(172_801),
            "preferences.checkpointDelay",
        ),
    ] {
        let e = asg
            .start_instance_refresh()
            .auto_scaling_group_name("demo-asg")
            .preferences(prefs.build())
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(e.meta().code(), Some("ValidationError"));
        let message = e.meta().message().unwrap_or_default();
        assert!(
            message.contains(member) && message.contains("172800"),
            "{message}"
        );
    }

    // Activities, newest first, with pagination.
    let page = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("demo-asg")
        .max_records(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.activities().len(), 2);
    let token = page.next_token().expect("more activities").to_owned();
    let next = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("demo-asg")
        .max_records(2)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_ne!(
        page.activities()[0].activity_id(),
        next.activities()[0].activity_id()
    );
    assert!(
        page.activities()[0]
            .description()
            .unwrap_or("")
            .contains("EC2 instance")
    );

    // Lifecycle hooks: ECS managed draining's own hook.
    let hooks = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        hooks.lifecycle_hooks()[0].lifecycle_hook_name(),
        Some("ecs-managed-draining-termination-hook")
    );
    assert_eq!(
        hooks.lifecycle_hooks()[0].lifecycle_transition(),
        Some("autoscaling:EC2_INSTANCE_TERMINATING")
    );
    let e = asg
        .complete_lifecycle_action()
        .auto_scaling_group_name("demo-asg")
        .lifecycle_hook_name("ecs-managed-draining-termination-hook")
        .instance_id(&first)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ValidationError"),
        "no lifecycle action is pending for an instance that is not terminating"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elbv2_operations() {
    // The test listener HTTPS, production plain HTTP.
    let mut stack = fleet_stack(true);
    for l in &mut stack.load_balancers[0].listeners {
        if l.name == "test" {
            l.protocol = "HTTPS".into();
        }
    }
    let fleet = Fleet::start(stack).await;
    let elb = &fleet.aws.elb;

    let lbs = elb
        .describe_load_balancers()
        .names("demo-alb")
        .send()
        .await
        .unwrap();
    let lb_arn = lbs.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let e = elb
        .describe_load_balancers()
        .names("nope")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.into_service_error()
            .is_load_balancer_not_found_exception()
    );

    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 2);
    let prod = listeners
        .listeners()
        .iter()
        .find(|l| {
            l.port().map(|p| p as u16)
                == fleet
                    .la
                    .plane()
                    .listener("production")
                    .ok()
                    .map(|l| l.addr().port())
        })
        .expect("production listener");
    let prod_arn = prod.listener_arn().unwrap().to_owned();
    assert_eq!(prod.protocol(), Some(&ProtocolEnum::Http));
    assert_eq!(prod.ssl_policy(), None);
    let test = listeners
        .listeners()
        .iter()
        .find(|l| l.listener_arn() != Some(prod_arn.as_str()))
        .expect("test listener");
    let test_addr = fleet.la.plane().listener("test").unwrap().addr();
    assert_eq!(test.protocol(), Some(&ProtocolEnum::Https));
    assert_eq!(test.port(), Some(i32::from(test_addr.port())));
    assert_eq!(
        test.ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    // What --ready-file says: the https URL and the CA to trust.
    let ready = serde_json::to_value(fleet.la.ready_info()).unwrap();
    assert_eq!(
        ready["listeners"]["demo-alb/test"],
        format!("https://{test_addr}/")
    );
    let ca = ready["ca_file"]
        .as_str()
        .expect("ca_file in the ready file");
    assert_eq!(Some(std::path::Path::new(ca)), fleet.la.ca_file());
    assert!(
        std::fs::read_to_string(ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let weights = |l: &aws_sdk_elasticloadbalancingv2::types::Listener| -> Vec<(String, i32)> {
        l.default_actions()[0]
            .forward_config()
            .unwrap()
            .target_groups()
            .iter()
            .map(|t| {
                (
                    t.target_group_arn()
                        .unwrap()
                        .rsplit('/')
                        .nth(1)
                        .unwrap()
                        .to_owned(),
                    t.weight().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        weights(prod),
        vec![
            ("demo-tg-blue".to_owned(), 100),
            ("demo-tg-green".to_owned(), 0)
        ]
    );
    let rules = elb
        .describe_rules()
        .listener_arn(&prod_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules()[0].is_default(), Some(true));

    let tgs = elb.describe_target_groups().send().await.unwrap();
    let names: Vec<_> = tgs
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .collect();
    assert_eq!(names, ["demo-tg-blue", "demo-tg-green"]);
    let blue = &tgs.target_groups()[0];
    assert_eq!(blue.health_check_path(), Some("/ready"));
    assert_eq!(blue.matcher().and_then(|m| m.http_code()), Some("200"));
    let blue_arn = blue.target_group_arn().unwrap().to_owned();
    let green_arn = tgs.target_groups()[1]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let e = elb
        .describe_target_groups()
        .names("nope")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_target_group_not_found_exception());

    let health = elb
        .describe_target_health()
        .target_group_arn(&blue_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(health.target_health_descriptions().len(), 3);
    for d in health.target_health_descriptions() {
        let t = d.target().unwrap();
        assert!(
            t.id().unwrap().starts_with("i-"),
            "instance id, as in bridge mode"
        );
        assert!(t.port().unwrap() > 0);
        assert_eq!(
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str()),
            Some("healthy")
        );
    }

    // Register a task's endpoint in green by instance id and port, as ECS would.
    let any = &health.target_health_descriptions()[0];
    let target = TargetDescription::builder()
        .id(any.target().unwrap().id().unwrap())
        .port(any.target().unwrap().port().unwrap())
        .build();
    elb.register_targets()
        .target_group_arn(&green_arn)
        .targets(target.clone())
        .send()
        .await
        .unwrap();
    let addr: std::net::SocketAddr = {
        let ip = fleet
            .la
            .control()
            .read(|st| st.instances[target.id().unwrap()].ip);
        std::net::SocketAddr::new(ip, target.port().unwrap() as u16)
    };
    let green = fleet.la.plane().target_group("demo-tg-green").unwrap();
    assert!(
        fleet
            .la
            .plane()
            .wait_for_target(
                "demo-tg-green",
                addr,
                localaws::TargetHealth::Healthy,
                Duration::from_secs(10)
            )
            .await
            .unwrap(),
        "{:?}",
        green.describe()
    );
    let e = elb
        .register_targets()
        .target_group_arn(&green_arn)
        .targets(
            TargetDescription::builder()
                .id("i-0000000000000000f")
                .port(80)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_target_exception());

    // Weighted forward, as CodeDeploy shifts traffic.
    let forward = |blue_w: i32, green_w: i32| {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(&blue_arn)
                            .weight(blue_w)
                            .build(),
                    )
                    .target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(&green_arn)
                            .weight(green_w)
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let modified = elb
        .modify_listener()
        .listener_arn(&prod_arn)
        .default_actions(forward(90, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        weights(&modified.listeners()[0]),
        vec![
            ("demo-tg-blue".to_owned(), 90),
            ("demo-tg-green".to_owned(), 10)
        ]
    );
    assert_eq!(
        fleet
            .la
            .plane()
            .listener("production")
            .unwrap()
            .forward()
            .describe(),
        "demo-tg-blue=90,demo-tg-green=10",
        "the data plane routes by the new weights"
    );
    let e = elb
        .modify_listener()
        .listener_arn(&prod_arn)
        .default_actions(forward(0, 0))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        e.into_service_error().meta().code(),
        Some("ValidationError")
    );
    let e = elb
        .modify_listener()
        .listener_arn(format!("{prod_arn}0"))
        .default_actions(forward(100, 0))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_listener_not_found_exception());

    elb.deregister_targets()
        .target_group_arn(&green_arn)
        .targets(target)
        .send()
        .await
        .unwrap();
    let after = elb
        .describe_target_health()
        .target_group_arn(&green_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.target_health_descriptions()[0]
            .target_health()
            .and_then(|h| h.state())
            .map(|s| s.as_str()),
        Some("draining")
    );
    fleet.stop().await;
}

/// `demo-svc`'s running tasks: ListTasks, then DescribeTasks.
async fn service_tasks(ecs: &aws_sdk_ecs::Client) -> Vec<aws_sdk_ecs::types::Task> {
    let arns = ecs
        .list_tasks()
        .cluster("demo-cluster")
        .service_name("demo-svc")
        .send()
        .await
        .unwrap();
    ecs.describe_tasks()
        .cluster("demo-cluster")
        .set_tasks(Some(arns.task_arns().to_vec()))
        .send()
        .await
        .unwrap()
        .tasks
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_operations() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;

    let clusters = ecs
        .describe_clusters()
        .clusters("demo-cluster")
        .clusters("nope")
        .send()
        .await
        .unwrap();
    let c = &clusters.clusters()[0];
    assert_eq!(c.cluster_name(), Some("demo-cluster"));
    assert_eq!(c.registered_container_instances_count(), 3);
    assert_eq!(c.running_tasks_count(), 3);
    assert_eq!(clusters.failures()[0].reason(), Some("MISSING"));

    let services = ecs
        .describe_services()
        .cluster("demo-cluster")
        .services("demo-svc")
        .send()
        .await
        .unwrap();
    let s = &services.services()[0];
    assert_eq!(s.desired_count(), 3);
    assert_eq!(s.running_count(), 3);
    assert_eq!(s.load_balancers()[0].container_port(), Some(8080));
    assert!(
        s.events()
            .iter()
            .any(|e| e.message().unwrap_or("").contains("reached a steady state"))
    );
    let e = ecs
        .describe_services()
        .cluster("nope")
        .services("demo-svc")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_cluster_not_found_exception());

    let tasks = service_tasks(ecs).await;
    assert_eq!(tasks.len(), 3);
    for t in &tasks {
        assert_eq!(t.last_status(), Some("RUNNING"));
        let binding = &t.containers()[0].network_bindings()[0];
        assert_eq!(binding.container_port(), Some(8080));
        assert!(binding.host_port().unwrap() > 0, "dynamic host port");
    }

    // A new revision of the task definition, registered as a pipeline would (extra fields kept).
    let registered = ecs
        .register_task_definition()
        .family("demo-web")
        .execution_role_arn("arn:aws:iam::000000000000:role/exec")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-zdt/server:v2")
                .essential(true)
                .stop_timeout(10)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(8080)
                        .host_port(0)
                        .build(),
                )
                .environment(
                    KeyValuePair::builder()
                        .name("APP_VERSION")
                        .value("v2")
                        .build(),
                )
                .environment(
                    KeyValuePair::builder()
                        .name("DRAIN_DELAY_SECONDS")
                        .value("1")
                        .build(),
                )
                .environment(
                    KeyValuePair::builder()
                        .name("SHUTDOWN_TIMEOUT_SECONDS")
                        .value("5")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let td = registered.task_definition().unwrap();
    assert_eq!(td.revision(), 2);
    assert_eq!(
        td.execution_role_arn(),
        Some("arn:aws:iam::000000000000:role/exec")
    );
    let got = ecs
        .describe_task_definition()
        .task_definition("demo-web:2")
        .send()
        .await
        .unwrap();
    assert_eq!(got.task_definition().unwrap().family(), Some("demo-web"));
    let e = ecs
        .describe_task_definition()
        .task_definition("demo-web:9")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_client_exception());

    // A rolling deployment of revision 2 with one more task.
    let updated = ecs
        .update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition("demo-web:2")
        .desired_count(4)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.service().unwrap().desired_count(), 4);
    let deadline = fleet.refresh_deadline();
    assert!(
        fleet
            .la
            .control()
            .wait_until(deadline, |st| {
                let live: Vec<_> = st.tasks.values().filter(|t| t.is_live()).collect();
                live.len() == 4
                    && live.iter().all(|t| {
                        t.task_definition.1 == 2
                            && t.last_status == localaws::control::TaskStatus::Running
                    })
                    && st.services["demo-svc"].steady
            })
            .await,
        "the service did not move to 4 tasks of revision 2"
    );
    let e = ecs
        .update_service()
        .cluster("demo-cluster")
        .service("nope")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_service_not_found_exception());

    // Container instances: drain one; its tasks move elsewhere.
    let arns = ecs
        .list_container_instances()
        .cluster("demo-cluster")
        .send()
        .await
        .unwrap();
    assert_eq!(arns.container_instance_arns().len(), 3);
    let cis = ecs
        .describe_container_instances()
        .cluster("demo-cluster")
        .set_container_instances(Some(arns.container_instance_arns().to_vec()))
        .send()
        .await
        .unwrap();
    let busiest = cis
        .container_instances()
        .iter()
        .max_by_key(|c| c.running_tasks_count())
        .unwrap();
    assert!(busiest.agent_connected());
    let drained_ec2 = busiest.ec2_instance_id().unwrap().to_owned();
    let changed = ecs
        .update_container_instances_state()
        .cluster("demo-cluster")
        .container_instances(busiest.container_instance_arn().unwrap())
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.container_instances()[0].status(), Some("DRAINING"));
    assert!(
        fleet
            .la
            .control()
            .wait_until(deadline, |st| {
                let live: Vec<_> = st.tasks.values().filter(|t| t.is_live()).collect();
                live.len() == 4
                    && live.iter().all(|t| {
                        t.instance != drained_ec2
                            && t.last_status == localaws::control::TaskStatus::Running
                    })
            })
            .await,
        "tasks did not leave the draining instance"
    );
    let draining = ecs
        .list_container_instances()
        .cluster("demo-cluster")
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(draining.container_instance_arns().len(), 1);
    fleet.stop().await;
}

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
