//! API conformance that needs no pre-existing resource, run against two endpoints: the
//! in-process `localaws` always, and LocalStack (started by testcontainers) when
//! asked for (`--ignored`, with `LOCALSTACK_AUTH_TOKEN`). LocalStack emulates Auto Scaling, ECS,
//! ELBv2 and CodeDeploy in its paid editions only, and its image must be pullable, so that test is
//! ignored by default, with the reason cargo prints.

use aws_sdk_codedeploy::types::TrafficRoutingType;
use aws_sdk_ecs::types::{ContainerDefinition, PortMapping};

use crate::util::{Aws, Fleet, fleet_stack};

/// What every endpoint must answer as AWS does. Names are unique to this test so it can run
/// against an account or emulator that holds other resources.
async fn conformance(aws: &Aws) {
    // Auto Scaling: an unknown group name is an empty list, not an error.
    let groups = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("zdt-conformance-no-such-group")
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    assert!(groups.auto_scaling_groups().is_empty());

    // ECS: a task definition round-trips, and a second registration is the next revision.
    let register = || {
        aws.ecs
            .register_task_definition()
            .family("zdt-conformance")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("server:conformance")
                    .memory(128)
                    .essential(true)
                    .stop_timeout(30)
                    .port_mappings(
                        PortMapping::builder()
                            .container_port(8080)
                            .host_port(0)
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let first = register().await.expect("RegisterTaskDefinition");
    let second = register().await.expect("RegisterTaskDefinition again");
    let rev =
        |o: &aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput| {
            o.task_definition()
                .map(|t| t.revision())
                .unwrap_or_default()
        };
    assert!(rev(&first) >= 1);
    assert_eq!(rev(&second), rev(&first) + 1);
    let described = aws
        .ecs
        .describe_task_definition()
        .task_definition("zdt-conformance")
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let td = described.task_definition().expect("task definition");
    assert_eq!(td.family(), Some("zdt-conformance"));
    assert_eq!(td.revision(), rev(&second), "the family's latest revision");
    let c = &td.container_definitions()[0];
    assert_eq!(c.stop_timeout(), Some(30));
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));

    // ECS: an unknown cluster is ClusterNotFoundException.
    let e = aws
        .ecs
        .describe_services()
        .cluster("zdt-conformance-no-such-cluster")
        .services("x")
        .send()
        .await
        .expect_err("unknown cluster");
    assert!(
        e.into_service_error().is_cluster_not_found_exception(),
        "ClusterNotFoundException"
    );

    // ELBv2: unknown names are the service's not-found errors.
    let e = aws
        .elb
        .describe_target_groups()
        .names("zdt-conformance-nope")
        .send()
        .await
        .expect_err("unknown target group");
    assert!(e.into_service_error().is_target_group_not_found_exception());
    let e = aws
        .elb
        .describe_load_balancers()
        .names("zdt-conformance-nope")
        .send()
        .await
        .expect_err("unknown load balancer");
    assert!(
        e.into_service_error()
            .is_load_balancer_not_found_exception()
    );

    // CodeDeploy: an unknown application, and a predefined ECS configuration.
    let e = aws
        .cd
        .get_application()
        .application_name("zdt-conformance-no-such-app")
        .send()
        .await
        .expect_err("unknown application");
    assert!(
        e.into_service_error()
            .is_application_does_not_exist_exception()
    );
    let config = aws
        .cd
        .get_deployment_config()
        .deployment_config_name("CodeDeployDefault.ECSCanary10Percent5Minutes")
        .send()
        .await
        .expect("GetDeploymentConfig");
    let info = config.deployment_config_info().expect("config info");
    let routing = info.traffic_routing_config().expect("traffic routing");
    assert_eq!(routing.r#type(), Some(&TrafficRoutingType::TimeBasedCanary));
    let canary = routing.time_based_canary().expect("canary");
    assert_eq!(
        (canary.canary_percentage(), canary.canary_interval()),
        (10, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conformance_localaws() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    conformance(&fleet.aws).await;
    fleet.stop().await;
}

/// Ignored by default (cargo lists it as ignored, with the reason): run it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LOCALSTACK_AUTH_TOKEN (LocalStack's paid editions emulate these services) and a Docker engine that can pull localstack/localstack-pro: run with --ignored"]
async fn api_conformance_localstack() {
    use testcontainers_modules::localstack::LocalStackPro;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;

    // Asked for explicitly: whatever keeps it from running is a failure with the reason, never
    // a pass.
    let token = std::env::var("LOCALSTACK_AUTH_TOKEN").expect(
        "LOCALSTACK_AUTH_TOKEN is not set: Auto Scaling, ECS, ELBv2 and CodeDeploy are in \
         LocalStack's paid editions only (the same checks ran against localaws in \
         api_conformance_localaws)",
    );
    let node = LocalStackPro::new(token)
        .start()
        .await
        .expect("start LocalStack Pro (Docker engine up? image pullable?)");
    let host = node.get_host().await.expect("container host");
    let port = node
        .get_host_port_ipv4(4566)
        .await
        .expect("LocalStack's edge port");
    let aws = Aws::new(&format!("http://{host}:{port}"));
    conformance(&aws).await;
}
