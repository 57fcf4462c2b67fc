variable "family" {
  description = "Task definition family (demo-web in dev)."
  type        = string
}

variable "service_name" {
  description = "Name of the ECS service (demo-svc in dev)."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster of the service."
  type        = string
}

variable "capacity_provider_name" {
  description = "Capacity provider the service places its tasks with."
  type        = string
}

variable "region" {
  description = "AWS region (for the awslogs driver)."
  type        = string
}

variable "image" {
  description = "Image of the first task definition revision; CodeDeploy deploys the later ones."
  type        = string
}

variable "app_version" {
  description = "APP_VERSION of the first revision."
  type        = string
  default     = "initial"
}

variable "app_message" {
  description = "APP_MSG shown on the page."
  type        = string
  default     = "Hello from ECS"
}

variable "container_name" {
  description = "Name of the container (web)."
  type        = string
  default     = "web"
}

variable "container_port" {
  description = "Port the container listens on; the host port is dynamic."
  type        = number
  default     = 8080
}

variable "cpu" {
  description = "CPU units of the container."
  type        = number
  default     = 256
}

variable "memory_reservation_mib" {
  description = "Soft memory limit of the container in MiB."
  type        = number
  default     = 128
}

variable "desired_count" {
  description = "Number of tasks. CodeDeploy does not set it: zero would run nothing."
  type        = number
  default     = 3

  validation {
    condition     = var.desired_count >= 2
    error_message = "desired_count must be at least 2: zero runs nothing (CodeDeploy does not manage it), one is an outage whenever its instance drains."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds ECS ignores load balancer health checks of a new task (cold start)."
  type        = number
  default     = 30

  validation {
    condition     = var.health_check_grace_period_seconds > 0
    error_message = "health_check_grace_period_seconds must be above 0: slow starters would be killed by their first failed checks."
  }
}

variable "drain_delay_seconds" {
  description = "DRAIN_DELAY_SECONDS: how long the app keeps serving after SIGTERM."
  type        = number
  default     = 5
}

variable "longest_request_seconds" {
  description = "The longest request the service answers, in seconds."
  type        = number
  default     = 15
}

variable "shutdown_timeout_seconds" {
  description = "SHUTDOWN_TIMEOUT_SECONDS: the whole graceful shutdown, from the signal."
  type        = number
  default     = 25

  validation {
    condition     = var.shutdown_timeout_seconds >= var.drain_delay_seconds + var.longest_request_seconds
    error_message = "shutdown_timeout_seconds must be at least drain_delay_seconds + longest_request_seconds, or requests in flight are cut off."
  }
}

variable "stop_timeout_seconds" {
  description = "ECS stopTimeout: SIGTERM to SIGKILL. Above the app's shutdown timeout (at most 120 on EC2)."
  type        = number
  default     = 30

  validation {
    condition     = var.stop_timeout_seconds >= var.shutdown_timeout_seconds && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds must be at least shutdown_timeout_seconds (SIGKILL would cut the graceful shutdown) and at most 120."
  }
}

variable "idle_timeout_seconds" {
  description = "IDLE_TIMEOUT_SECONDS: keep-alive idle timeout, above the load balancer's."
  type        = number
  default     = 75
}

variable "target_group_arn" {
  description = "Target group the service starts in (blue)."
  type        = string
}

variable "log_kms_key_arn" {
  description = "KMS key that encrypts the log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the log group, in days."
  type        = number
  default     = 365
}
