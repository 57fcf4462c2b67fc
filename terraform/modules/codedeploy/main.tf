# CodeDeploy blue/green for the ECS service: traffic shifts by a canary or linear configuration,
# green is validated through the test listener first (the AppSpec's AfterAllowTestTraffic hook),
# the deployment rolls back automatically on failure, on request and when an alarm fires, and the
# blue task set stays for a termination wait so a rollback is a listener switch, not a restart.

resource "aws_codedeploy_app" "this" {
  name             = var.application_name
  compute_platform = "ECS"
}

data "aws_iam_policy_document" "assume_codedeploy" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  name               = "${var.application_name}-codedeploy"
  assume_role_policy = data.aws_iam_policy_document.assume_codedeploy.json
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:aws:iam::aws:policy/AWSCodeDeployRoleForECS"
}

# The alarms that stop a deployment: any 5xx from the targets, any unhealthy target, in either
# target group. They complement the probe (which sees every request), they do not replace it:
# ALB metrics arrive per minute and only while traffic flows.
locals {
  target_groups = {
    blue  = var.target_group_arn_suffixes["blue"]
    green = var.target_group_arn_suffixes["green"]
  }
}

resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  for_each            = local.target_groups
  alarm_name          = "${var.application_name}-${each.key}-target-5xx"
  alarm_description   = "targets in ${each.key} answered 5xx"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = var.target_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = each.value
  }
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  for_each            = local.target_groups
  alarm_name          = "${var.application_name}-${each.key}-unhealthy-hosts"
  alarm_description   = "a target in ${each.key} is unhealthy"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = each.value
  }
}

resource "aws_codedeploy_deployment_group" "this" {
  app_name               = aws_codedeploy_app.this.name
  deployment_group_name  = var.deployment_group_name
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = var.deployment_config_name

  deployment_style {
    deployment_type   = "BLUE_GREEN"
    deployment_option = "WITH_TRAFFIC_CONTROL"
  }

  blue_green_deployment_config {
    # Reroute as soon as green is ready: the AppSpec's validation hook has already run against
    # the test listener. STOP_DEPLOYMENT would wait for someone to call ContinueDeployment.
    deployment_ready_option {
      action_on_timeout = "CONTINUE_DEPLOYMENT"
    }

    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.termination_wait_minutes
    }
  }

  ecs_service {
    cluster_name = var.cluster_name
    service_name = var.service_name
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [var.production_listener_arn]
      }

      test_traffic_route {
        listener_arns = [var.test_listener_arn]
      }

      target_group {
        name = var.target_group_names["blue"]
      }

      target_group {
        name = var.target_group_names["green"]
      }
    }
  }

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"]
  }

  alarm_configuration {
    enabled = true
    alarms = concat(
      [for a in aws_cloudwatch_metric_alarm.target_5xx : a.alarm_name],
      [for a in aws_cloudwatch_metric_alarm.unhealthy_hosts : a.alarm_name],
    )
  }
}
