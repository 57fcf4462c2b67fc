# The dev environment: the names localaws's default stack uses, and the timing every module must
# agree on in one place (locals.app): the application's drain delay, shutdown timeout and
# keep-alive idle timeout.

data "aws_caller_identity" "current" {}

locals {
  name = "demo"

  # The server's environment (crates/server/src/config.rs); every delay below derives from it.
  app = {
    drain_delay_seconds      = 5
    shutdown_timeout_seconds = 25
    idle_timeout_seconds     = 75
    longest_request_seconds  = 15
  }
}

# One key for every log group and the image repository.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:a key policy; resource "*" means this key
  #checkov:skip=CKV_AWS_356:a key policy; resource "*" means this key
  #checkov:skip=CKV_AWS_109:a key policy; the account root administers its own key
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

resource "aws_kms_key" "logs" {
  description             = "${local.name}: logs and images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

module "network" {
  source = "../../modules/network"

  name            = local.name
  cidr_block      = var.vpc_cidr_block
  az_count        = 2
  log_kms_key_arn = aws_kms_key.logs.arn
}

module "ecr" {
  source = "../../modules/ecr"

  name        = "${local.name}-web"
  kms_key_arn = aws_kms_key.logs.arn
}

module "traffic" {
  source = "../../modules/traffic"

  name                     = local.name
  alb_name                 = "${local.name}-alb"
  vpc_id                   = module.network.vpc_id
  vpc_cidr_block           = module.network.vpc_cidr_block
  subnet_ids               = module.network.public_subnet_ids
  certificate_arn          = var.certificate_arn
  deletion_protection      = var.alb_deletion_protection
  test_listener_port       = 8080
  test_ingress_cidr_blocks = var.test_ingress_cidr_blocks

  idle_timeout_seconds         = 60
  app_idle_timeout_seconds     = local.app.idle_timeout_seconds
  app_drain_delay_seconds      = local.app.drain_delay_seconds
  deregistration_delay_seconds = 30
}

module "compute" {
  source = "../../modules/compute"

  name                  = local.name
  asg_name              = "${local.name}-asg"
  launch_template_name  = "${local.name}-lt"
  cluster_name          = "${local.name}-cluster"
  vpc_id                = module.network.vpc_id
  subnet_ids            = module.network.private_subnet_ids
  alb_security_group_id = module.traffic.alb_security_group_id
  instance_type         = var.instance_type

  min_size         = 3
  max_size         = 6
  desired_capacity = 3

  refresh_min_healthy_percentage  = 100
  refresh_max_healthy_percentage  = 200
  refresh_instance_warmup_seconds = 180
}

module "cluster" {
  source = "../../modules/cluster"

  cluster_name                   = "${local.name}-cluster"
  autoscaling_group_arn          = module.compute.autoscaling_group_arn
  managed_draining               = "ENABLED"
  managed_termination_protection = "ENABLED"
}

module "ecs_service" {
  source = "../../modules/ecs_service"

  family                 = "${local.name}-web"
  service_name           = "${local.name}-svc"
  cluster_name           = module.cluster.cluster_name
  capacity_provider_name = module.cluster.capacity_provider_name
  region                 = var.region
  image                  = "${module.ecr.repository_url}:${var.initial_image_tag}"
  target_group_arn       = module.traffic.target_group_arns["blue"]
  log_kms_key_arn        = aws_kms_key.logs.arn
  desired_count          = 3

  drain_delay_seconds      = local.app.drain_delay_seconds
  shutdown_timeout_seconds = local.app.shutdown_timeout_seconds
  idle_timeout_seconds     = local.app.idle_timeout_seconds
  longest_request_seconds  = local.app.longest_request_seconds
  stop_timeout_seconds     = 30
}

module "codedeploy" {
  source = "../../modules/codedeploy"

  application_name          = "${local.name}-cd-app"
  deployment_group_name     = "${local.name}-dg"
  deployment_config_name    = "CodeDeployDefault.ECSCanary10Percent5Minutes"
  cluster_name              = module.cluster.cluster_name
  service_name              = module.ecs_service.service_name
  production_listener_arn   = module.traffic.production_listener_arn
  test_listener_arn         = module.traffic.test_listener_arn
  target_group_names        = module.traffic.target_group_names
  target_group_arn_suffixes = module.traffic.target_group_arn_suffixes
  alb_arn_suffix            = module.traffic.alb_arn_suffix
  termination_wait_minutes  = 15
}
