//! Auto Scaling through the SDK: one behaviour per test, each on a fleet of its own.

use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefreshStatus, LaunchTemplateSpecification, RefreshPreferences,
};

use crate::util::{Fleet, fleet_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_and_its_instances_are_described_and_an_unknown_name_is_an_empty_list() {
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_out_of_range_is_refused_naming_the_bound_and_one_in_range_scales() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_without_a_desired_configuration_rolls_to_the_groups_new_version_alone() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;
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

    // A refresh without a desired configuration uses the group's (now version 2); a second one
    // is refused while it runs, and there is nothing to roll back to.
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
        .wait_refresh(&id, |s| s == &InstanceRefreshStatus::Successful)
        .await;
    assert_eq!(r.percentage_complete(), Some(100));
    assert_eq!(r.instances_to_update(), Some(0));
    assert_eq!(fleet.versions_in_service(), vec![2, 2, 2]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_preferences_are_checked_as_aws_checks_them() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;
    let e = asg
        .start_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .preferences(
            RefreshPreferences::builder()
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
            RefreshPreferences::builder().bake_time(172_801),
            "preferences.bakeTime",
        ),
        (
            RefreshPreferences::builder().checkpoint_delay(172_801),
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_activities_come_newest_first_in_pages() {
    // The fleet's three launches are three activities: two pages of two.
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;
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
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_drainings_hook_is_listed_and_completing_it_needs_a_pending_action() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let asg = &fleet.aws.asg;
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
    let first = fleet
        .la
        .control()
        .read(|st| st.instances.keys().next().cloned())
        .expect("an instance");
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
