# The task definition and the ECS service. CodeDeploy owns deployments (deployment controller
# CODE_DEPLOY): it registers new task definition revisions and moves the service between the blue
# and green target groups, so Terraform creates the first revision and ignores those two later.
#
# Shutdown timing, in the order a task lives through it:
#   deregistration starts -> the ALB stops routing within seconds (the app keeps serving for
#   DRAIN_DELAY_SECONDS) -> SIGTERM -> the app drains and exits within SHUTDOWN_TIMEOUT_SECONDS
#   -> stopTimeout later ECS sends SIGKILL. Hence stopTimeout >= SHUTDOWN_TIMEOUT_SECONDS >=
#   DRAIN_DELAY_SECONDS + the longest request, and deregistration delay >= DRAIN_DELAY_SECONDS.

locals {
  container = {
    name                   = var.container_name
    image                  = var.image
    essential              = true
    cpu                    = var.cpu
    memoryReservation      = var.memory_reservation_mib
    stopTimeout            = var.stop_timeout_seconds
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    portMappings = [
      { containerPort = var.container_port, hostPort = 0, protocol = "tcp" }
    ]
    environment = [
      { name = "APP_VERSION", value = var.app_version },
      { name = "APP_MSG", value = var.app_message },
      { name = "LOG_FORMAT", value = "json" },
      { name = "DRAIN_DELAY_SECONDS", value = tostring(var.drain_delay_seconds) },
      { name = "SHUTDOWN_TIMEOUT_SECONDS", value = tostring(var.shutdown_timeout_seconds) },
      { name = "IDLE_TIMEOUT_SECONDS", value = tostring(var.idle_timeout_seconds) },
    ]
    healthCheck = {
      command     = ["CMD", "/server", "healthcheck"]
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 10
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.region
        awslogs-stream-prefix = var.container_name
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${var.family}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
}

data "aws_iam_policy_document" "assume_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Pulls the image and writes logs, nothing else.
resource "aws_iam_role" "execution" {
  name               = "${var.family}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_tasks.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# The application calls no AWS API: its role has no policy.
resource "aws_iam_role" "task" {
  name               = "${var.family}-task"
  assume_role_policy = data.aws_iam_policy_document.assume_tasks.json
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.family
  network_mode             = "bridge"
  requires_compatibilities = ["EC2"]
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container])
}

resource "aws_ecs_service" "this" {
  name            = var.service_name
  cluster         = var.cluster_name
  task_definition = aws_ecs_task_definition.this.arn
  desired_count   = var.desired_count

  # CodeDeploy does not manage the desired count: it must be set here.
  deployment_controller {
    type = "CODE_DEPLOY"
  }

  # While instances drain (refresh, scale-in) replacements start before old tasks stop.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # Slow starters are not killed by load balancer checks before they are ready.
  health_check_grace_period_seconds = var.health_check_grace_period_seconds

  capacity_provider_strategy {
    capacity_provider = var.capacity_provider_name
    weight            = 1
    base              = 0
  }

  ordered_placement_strategy {
    type  = "spread"
    field = "attribute:ecs.availability-zone"
  }

  ordered_placement_strategy {
    type  = "spread"
    field = "instanceId"
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = var.container_name
    container_port   = var.container_port
  }

  lifecycle {
    ignore_changes = [task_definition, load_balancer]
  }
}
