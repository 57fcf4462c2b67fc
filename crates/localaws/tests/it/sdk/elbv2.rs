//! Elastic Load Balancing v2 through the SDK: one behaviour per test, each on a fleet of its own.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, ProtocolEnum, TargetDescription,
    TargetGroupTuple,
};

use crate::util::{Fleet, fleet_stack};

/// The fleet with its test listener on HTTPS (production stays plain HTTP).
async fn https_test_fleet() -> Fleet {
    let mut stack = fleet_stack(true);
    for l in &mut stack.load_balancers[0].listeners {
        if l.name == "test" {
            l.protocol = "HTTPS".into();
        }
    }
    Fleet::start(stack).await
}

/// The production listener, as `DescribeListeners` lists it.
async fn production(fleet: &Fleet) -> Listener {
    let elb = &fleet.aws.elb;
    let lbs = elb
        .describe_load_balancers()
        .names("demo-alb")
        .send()
        .await
        .unwrap();
    let lb_arn = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .unwrap();
    let port = fleet
        .la
        .plane()
        .listener("production")
        .ok()
        .map(|l| l.addr().port());
    listeners
        .listeners()
        .iter()
        .find(|l| l.port().map(|p| p as u16) == port)
        .expect("production listener")
        .clone()
}

/// The ARNs of `demo-tg-blue` and `demo-tg-green`.
async fn target_group_arns(elb: &Client) -> (String, String) {
    let tgs = elb.describe_target_groups().send().await.unwrap();
    let arn = |i: usize| {
        tgs.target_groups()[i]
            .target_group_arn()
            .unwrap()
            .to_owned()
    };
    (arn(0), arn(1))
}

/// A listener's forward weights by target group name.
fn weights(l: &Listener) -> Vec<(String, i32)> {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_and_target_groups_are_described_and_unknown_names_are_not_found() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let elb = &fleet.aws.elb;
    let lbs = elb
        .describe_load_balancers()
        .names("demo-alb")
        .send()
        .await
        .unwrap();
    assert_eq!(lbs.load_balancers().len(), 1);
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
    let e = elb
        .describe_target_groups()
        .names("nope")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_target_group_not_found_exception());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_say_their_protocol_policy_and_weights_and_the_ready_file_the_https_url_and_ca() {
    let fleet = https_test_fleet().await;
    let elb = &fleet.aws.elb;
    let prod = production(&fleet).await;
    let prod_arn = prod.listener_arn().unwrap().to_owned();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(prod.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 2);
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
    assert_eq!(
        weights(&prod),
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_registered_by_instance_and_port_turns_healthy_and_drains_when_deregistered() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let elb = &fleet.aws.elb;
    let (blue_arn, green_arn) = target_group_arns(elb).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_by_modify_listener_route_the_data_plane_and_bad_ones_are_refused() {
    // Weighted forward, as CodeDeploy shifts traffic.
    let fleet = Fleet::start(fleet_stack(true)).await;
    let elb = &fleet.aws.elb;
    let prod_arn = production(&fleet).await.listener_arn().unwrap().to_owned();
    let (blue_arn, green_arn) = target_group_arns(elb).await;
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
    fleet.stop().await;
}
