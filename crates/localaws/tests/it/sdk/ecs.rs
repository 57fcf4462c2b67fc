//! ECS through the SDK: one behaviour per test, each on a fleet of its own (the service under
//! ECS's rolling controller, so `UpdateService` may change its task definition).

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ContainerDefinition, ContainerInstanceStatus, DeploymentCircuitBreaker,
    DeploymentConfiguration, KeyValuePair, PortMapping,
};

use crate::util::{Fleet, rolling_stack};

/// `demo-svc`'s running tasks: ListTasks, then DescribeTasks.
pub(super) async fn service_tasks(ecs: &Client) -> Vec<aws_sdk_ecs::types::Task> {
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

/// Registers revision 2 of `demo-web` as a pipeline would: with an execution role localaws does
/// not use, which it keeps.
async fn register_v2(ecs: &Client) -> aws_sdk_ecs::types::TaskDefinition {
    ecs.register_task_definition()
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
        .unwrap()
        .task_definition
        .expect("the registered task definition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_service_and_tasks_are_described_and_unknown_ones_reported() {
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
    let deployment = s.deployments()[0].id().expect("the deployment's id");
    for t in &tasks {
        assert_eq!(t.last_status(), Some("RUNNING"));
        assert_eq!(
            t.started_by(),
            Some(deployment),
            "the deployment that started it"
        );
        let binding = &t.containers()[0].network_bindings()[0];
        assert_eq!(binding.container_port(), Some(8080));
        assert!(binding.host_port().unwrap() > 0, "dynamic host port");
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_definition_registered_as_a_pipeline_would_keeps_what_localaws_does_not_use() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    let td = register_v2(ecs).await;
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_service_rolls_to_a_new_revision_and_count_and_refuses_an_unknown_service() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    register_v2(ecs).await;
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
    assert!(
        fleet
            .la
            .control()
            .wait_until(fleet.refresh_deadline(), |st| {
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
    // One deployment left, of revision 2, completed; the circuit breaker as set.
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    DeploymentCircuitBreaker::builder()
                        .enable(true)
                        .rollback(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let described = ecs
        .describe_services()
        .cluster("demo-cluster")
        .services("demo-svc")
        .send()
        .await
        .unwrap();
    let s = &described.services()[0];
    let d = s.deployments();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].status(), Some("PRIMARY"));
    assert!(
        d[0].id().is_some_and(|id| id.starts_with("ecs-svc/")),
        "{d:?}"
    );
    assert!(
        d[0].task_definition()
            .is_some_and(|t| t.ends_with("task-definition/demo-web:2")),
        "{d:?}"
    );
    assert_eq!(d[0].rollout_state().map(|r| r.as_str()), Some("COMPLETED"));
    assert_eq!(d[0].running_count(), 4);
    let breaker = s
        .deployment_configuration()
        .and_then(|c| c.deployment_circuit_breaker())
        .expect("the circuit breaker");
    assert!(breaker.enable() && breaker.rollback(), "{breaker:?}");
    let e = ecs
        .update_service()
        .cluster("demo-cluster")
        .service("nope")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_service_not_found_exception());
    // Values out of the ranges the API takes are refused where the request is read, naming the
    // member and its range; the service is left as it was.
    for (update, member) in [
        (
            ecs.update_service().desired_count(1001),
            "desiredCount: expected a whole number from 0 to 1000",
        ),
        (
            ecs.update_service().deployment_configuration(
                DeploymentConfiguration::builder()
                    .maximum_percent(201)
                    .build(),
            ),
            "maximumPercent: expected a whole number from 100 to 200",
        ),
        (
            ecs.update_service().deployment_configuration(
                DeploymentConfiguration::builder()
                    .minimum_healthy_percent(101)
                    .build(),
            ),
            "minimumHealthyPercent: expected a whole number from 0 to 100",
        ),
    ] {
        let e = update
            .cluster("demo-cluster")
            .service("demo-svc")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_invalid_parameter_exception(), "{e:?}");
        let message = e.meta().message().unwrap_or_default();
        assert!(message.contains(member), "{message}");
    }
    let s = fleet
        .la
        .control()
        .read(|st| st.services["demo-svc"].clone());
    assert_eq!((s.desired, s.min_healthy, s.max_percent), (4, 100, 200));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_container_instance_hands_its_tasks_to_the_others() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
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
    assert!(busiest.running_tasks_count() > 0, "{busiest:?}");
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
    // Every task of the service (3) runs on the other two.
    assert!(
        fleet
            .la
            .control()
            .wait_until(fleet.refresh_deadline(), |st| {
                let live: Vec<_> = st.tasks.values().filter(|t| t.is_live()).collect();
                live.len() == 3
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_deployment_replaces_every_task_with_ones_of_the_same_revision() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    let before: Vec<String> = service_tasks(ecs)
        .await
        .iter()
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect();
    assert_eq!(before.len(), 3);
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .force_new_deployment(true)
        .send()
        .await
        .unwrap();
    let primary = fleet
        .la
        .control()
        .read(|st| st.services["demo-svc"].primary().map(|d| d.id.clone()))
        .expect("a primary deployment");
    assert!(
        fleet
            .la
            .control()
            .wait_until(fleet.refresh_deadline(), |st| {
                let live: Vec<_> = st.tasks.values().filter(|t| t.is_live()).collect();
                live.len() == 3
                    && live.iter().all(|t| {
                        t.deployment.as_ref() == Some(&primary)
                            && t.task_definition.1 == 1
                            && t.last_status == localaws::control::TaskStatus::Running
                    })
                    && st.services["demo-svc"].steady
            })
            .await,
        "the new deployment did not replace the tasks"
    );
    let after = service_tasks(ecs).await;
    assert!(
        after
            .iter()
            .all(|t| !before.iter().any(|b| Some(b.as_str()) == t.task_arn())),
        "every task is new"
    );
    fleet.stop().await;
}
