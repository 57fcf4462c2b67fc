//! What AWS, or the Terraform provider, uses for a setting that is left out: one table, read by
//! the stack file's own defaults, by the stack `tfstack` derives from a Terraform configuration,
//! and by `orchestrate preflight` when it judges one, so the three never disagree about what an
//! absent setting means. Seconds unless the name says otherwise.
//!
//! Where the AWS API and the Terraform provider differ, the name says whose it is: the stack
//! file follows the API, a configuration is judged by the provider.

/// `aws_lb.idle_timeout`: how long an ALB keeps an idle connection open.
pub const LB_IDLE_TIMEOUT: u32 = 60;

/// `aws_lb_target_group.deregistration_delay`: how long a deregistered target drains.
pub const DEREGISTRATION_DELAY: u32 = 300;

/// `aws_lb_target_group.health_check.path`.
pub const HEALTH_CHECK_PATH: &str = "/";
/// `health_check.interval` of an HTTP(S) target group.
pub const HEALTH_CHECK_INTERVAL: u32 = 30;
/// `health_check.timeout` of an HTTP(S) target group.
pub const HEALTH_CHECK_TIMEOUT: u32 = 5;
/// `health_check.healthy_threshold`: consecutive successes before a target is healthy.
pub const HEALTHY_THRESHOLD: u32 = 5;
/// `health_check.unhealthy_threshold`: consecutive failures before it is unhealthy.
pub const UNHEALTHY_THRESHOLD: u32 = 2;
/// `health_check.matcher`.
pub const HEALTH_CHECK_MATCHER: &str = "200";

/// A container's `stopTimeout` when the task definition leaves it out (the ECS agent's
/// `ECS_CONTAINER_STOP_TIMEOUT`): SIGTERM, then SIGKILL this long after.
pub const STOP_TIMEOUT: u32 = 30;

/// `aws_ecs_service.deployment_minimum_healthy_percent` (a rolling service).
pub const MINIMUM_HEALTHY_PERCENT: u32 = 100;
/// `aws_ecs_service.deployment_maximum_percent`.
pub const MAXIMUM_PERCENT: u32 = 200;

/// `aws_autoscaling_group.health_check_type`.
pub const ASG_HEALTH_CHECK_TYPE: &str = "EC2";
/// The Terraform provider's `aws_autoscaling_group.health_check_grace_period` (the API's is 0,
/// which the stack file keeps).
pub const PROVIDER_ASG_HEALTH_CHECK_GRACE_PERIOD: u32 = 300;

/// An instance refresh's `min_healthy_percentage`.
pub const REFRESH_MIN_HEALTHY_PERCENTAGE: u32 = 90;
/// An instance refresh's `max_healthy_percentage`.
pub const REFRESH_MAX_HEALTHY_PERCENTAGE: u32 = 100;
/// An instance refresh's `checkpoint_delay`.
pub const CHECKPOINT_DELAY: u32 = 3600;

/// CodeDeploy's `termination_wait_time_in_minutes` (minutes) in a
/// `terminate_blue_instances_on_deployment_success` block.
pub const TERMINATION_WAIT_MINUTES: u32 = 5;

/// `aws_cloudwatch_metric_alarm.period`.
pub const ALARM_PERIOD: u32 = 60;
