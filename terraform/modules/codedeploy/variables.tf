variable "application_name" {
  description = "CodeDeploy application (demo-cd-app in dev)."
  type        = string
}

variable "deployment_group_name" {
  description = "CodeDeploy deployment group (demo-dg in dev)."
  type        = string
}

variable "deployment_config_name" {
  description = "Traffic shifting: a canary or linear configuration, never all at once."
  type        = string
  default     = "CodeDeployDefault.ECSCanary10Percent5Minutes"

  validation {
    condition     = can(regex("^CodeDeployDefault\\.ECS(Canary|Linear)", var.deployment_config_name))
    error_message = "deployment_config_name must be an ECS canary or linear configuration: AllAtOnce sends every request to an unproven release."
  }
}

variable "termination_wait_minutes" {
  description = "Minutes the blue task set stays after a successful deployment (a rollback in that window is instant)."
  type        = number
  default     = 15

  validation {
    condition     = var.termination_wait_minutes >= 5 && var.termination_wait_minutes <= 2880
    error_message = "termination_wait_minutes must be 5 to 2880."
  }
}

variable "cluster_name" {
  description = "ECS cluster of the service."
  type        = string
}

variable "service_name" {
  description = "ECS service CodeDeploy deploys."
  type        = string
}

variable "production_listener_arn" {
  description = "Listener of the production traffic."
  type        = string
}

variable "test_listener_arn" {
  description = "Listener of the test traffic (green before it takes production)."
  type        = string
}

variable "target_group_names" {
  description = "Blue and green target group names."
  type        = map(string)

  validation {
    condition     = contains(keys(var.target_group_names), "blue") && contains(keys(var.target_group_names), "green")
    error_message = "target_group_names needs the keys blue and green."
  }
}

variable "target_group_arn_suffixes" {
  description = "Blue and green target group ARN suffixes (alarm dimensions)."
  type        = map(string)
}

variable "alb_arn_suffix" {
  description = "Load balancer ARN suffix (alarm dimension)."
  type        = string
}

variable "target_5xx_threshold" {
  description = "Target 5xx responses per minute that stop the deployment."
  type        = number
  default     = 0
}
