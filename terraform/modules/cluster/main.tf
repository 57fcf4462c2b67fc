# The ECS cluster and the capacity provider that ties it to the Auto Scaling group.
#
# Managed draining: when Auto Scaling terminates an instance (scale-in, instance refresh), ECS
# first sets it to DRAINING, so its tasks are replaced elsewhere and deregistered from their target
# groups before the instance goes away. Managed termination protection keeps scale-in from
# picking instances that still run tasks; it needs the group's scale-in protection, so the
# instance refresh must use scale_in_protected_instances = "Refresh" (see the compute module).

resource "aws_ecs_cluster" "this" {
  name = var.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_capacity_provider" "this" {
  name = "${var.cluster_name}-cp"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = var.autoscaling_group_arn
    managed_draining               = var.managed_draining
    managed_termination_protection = var.managed_termination_protection

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = var.target_capacity
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = 2
      instance_warmup_period    = var.instance_warmup_seconds
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = [aws_ecs_capacity_provider.this.name]

  default_capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.this.name
    weight            = 1
    base              = 0
  }
}
