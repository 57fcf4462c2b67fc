# The Application Load Balancer: production listener (HTTP 80, or HTTPS 443 with HTTP redirected
# when a certificate is given), the test listener CodeDeploy sends green's test traffic to, and the
# blue/green target groups. CodeDeploy rewrites the listeners' forward actions during a deployment,
# so Terraform ignores changes to them after creation.

locals {
  https = var.certificate_arn != null
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Load balancer: clients in, dynamic host ports of the instances out"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  #checkov:skip=CKV_AWS_260:a public web service; with a certificate port 80 only redirects to HTTPS
  for_each          = toset(var.ingress_cidr_blocks)
  security_group_id = aws_security_group.alb.id
  description       = "production HTTP"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each          = local.https ? toset(var.ingress_cidr_blocks) : toset([])
  security_group_id = aws_security_group.alb.id
  description       = "production HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The test listener is for validation only: never open to the internet.
resource "aws_vpc_security_group_ingress_rule" "test" {
  for_each          = toset(var.test_ingress_cidr_blocks)
  security_group_id = aws_security_group.alb.id
  description       = "test listener (green validation)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.test_listener_port
  to_port           = var.test_listener_port
}

resource "aws_vpc_security_group_egress_rule" "to_tasks" {
  security_group_id = aws_security_group.alb.id
  description       = "dynamic host ports of the tasks"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = 32768
  to_port           = 65535
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:WAF is decided per environment; dev serves a demo page
  #checkov:skip=CKV2_AWS_20:HTTP is redirected to HTTPS whenever certificate_arn is set; dev runs without one
  #checkov:skip=CKV_AWS_91:access logs need a bucket per account; the probe records every request of a rollout
  name                       = var.alb_name
  load_balancer_type         = "application"
  internal                   = var.internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
}

resource "aws_lb_target_group" "blue" {
  name                 = "${var.name}-tg-blue"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_seconds
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; targets are reached inside the VPC only

  # Readiness, not liveness: /ready turns 503 the moment a task starts draining.
  health_check {
    path                = "/ready"
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = var.health_check_interval_seconds
    timeout             = var.health_check_timeout_seconds
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }
}

resource "aws_lb_target_group" "green" {
  name                 = "${var.name}-tg-green"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_seconds
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; targets are reached inside the VPC only

  # Readiness, not liveness: /ready turns 503 the moment a task starts draining.
  health_check {
    path                = "/ready"
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = var.health_check_interval_seconds
    timeout             = var.health_check_timeout_seconds
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }
}

resource "aws_lb_listener" "production" {
  #checkov:skip=CKV_AWS_2:plain HTTP only when no certificate is configured; with one it redirects to HTTPS
  #checkov:skip=CKV_AWS_103:plain HTTP only when no certificate is configured; with one it redirects to HTTPS
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  dynamic "default_action" {
    for_each = local.https ? [] : [1]
    content {
      type             = "forward"
      target_group_arn = aws_lb_target_group.blue.arn
    }
  }

  dynamic "default_action" {
    for_each = local.https ? [1] : []
    content {
      type = "redirect"
      redirect {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.blue.arn
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}

resource "aws_lb_listener" "test" {
  #checkov:skip=CKV_AWS_2:test listener reached from inside the VPC only, for green validation
  #checkov:skip=CKV_AWS_103:test listener reached from inside the VPC only, for green validation
  load_balancer_arn = aws_lb.this.arn
  port              = var.test_listener_port
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.green.arn
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}
