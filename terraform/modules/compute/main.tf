# Container instances: launch template, Auto Scaling group with its instance refresh preferences,
# instance role and security group.
#
# Terraform creates launch template versions; `orchestrate refresh --launch-template-version N`
# moves the group to a new version under the probe (StartInstanceRefresh with a desired
# configuration and the preferences below), so Terraform ignores later changes of the version the
# group points at. The preferences are exported (output instance_refresh_preferences) so both
# paths use the same ones.

data "aws_ssm_parameter" "ecs_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

locals {
  user_data = <<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<'CONFIG'
    ECS_CLUSTER=${var.cluster_name}
    ECS_ENABLE_TASK_IAM_ROLE=true
    ECS_CONTAINER_STOP_TIMEOUT=${var.container_stop_timeout_seconds}s
    ECS_ENABLE_CONTAINER_METADATA=true
    CONFIG
  EOT
}

resource "aws_security_group" "instances" {
  name        = "${var.name}-instances"
  description = "Container instances: dynamic host ports reachable from the load balancer only"
  vpc_id      = var.vpc_id
}

# Tasks use dynamic host ports (hostPort 0): the ephemeral range, from the ALB only.
resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  security_group_id            = aws_security_group.instances.id
  description                  = "dynamic host ports from the load balancer"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 32768
  to_port                      = 65535
}

# Image pulls (ECR), the ECS agent, CloudWatch Logs: HTTPS out through the NAT gateway.
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.instances.id
  description       = "HTTPS to AWS APIs and ECR"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-ecs-instance"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

# The AWS-managed policy for the ECS agent (register, poll, pull from ECR, send logs).
resource "aws_iam_role_policy_attachment" "ecs_agent" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

# Shell access through Session Manager instead of SSH keys and an open port 22.
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-ecs-instance"
  role = aws_iam_role.instance.name
}

resource "aws_launch_template" "this" {
  name                   = var.launch_template_name
  image_id               = coalesce(var.ami_id, data.aws_ssm_parameter.ecs_ami.value)
  instance_type          = var.instance_type
  user_data              = base64encode(local.user_data)
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.instances.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }

  # IMDSv2 only; one hop, so containers on the bridge network cannot reach the instance's
  # credentials (tasks get their own role through the ECS agent).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-ecs" }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = var.asg_name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity

  # ELB health: an instance whose load balancer health checks fail is replaced, not counted
  # healthy. The grace period covers boot, agent registration and the first checks. ELB health
  # counts for the target groups attached to the group (instance_target_group_arns); the
  # blue/green groups are not attached: ECS registers tasks there on dynamic ports, and an
  # attached group would register every instance on port 8080, where nothing listens.
  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period_seconds
  target_group_arns         = var.instance_target_group_arns

  # Needed by the capacity provider's managed termination protection.
  protect_from_scale_in     = var.protect_from_scale_in
  capacity_rebalance        = false
  default_cooldown          = 60
  wait_for_capacity_timeout = "15m"

  # A pinned version number, never $Latest or $Default: Auto Scaling refuses to roll back a
  # refresh whose configuration names those.
  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage       = var.refresh_min_healthy_percentage
      max_healthy_percentage       = var.refresh_max_healthy_percentage
      instance_warmup              = var.refresh_instance_warmup_seconds
      checkpoint_percentages       = var.refresh_checkpoint_percentages
      checkpoint_delay             = var.refresh_checkpoint_delay_seconds
      auto_rollback                = true
      skip_matching                = true
      scale_in_protected_instances = var.refresh_scale_in_protected_instances
      standby_instances            = "Terminate"
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  lifecycle {
    # orchestrate refresh moves the version (see the top of this file); ECS managed scaling
    # moves the desired capacity.
    ignore_changes = [launch_template[0].version, desired_capacity]
  }
}
