variable "name" {
  description = "Prefix for resource names (the stack name, e.g. demo); target groups are <name>-tg-blue and <name>-tg-green."
  type        = string
}

variable "alb_name" {
  description = "Name of the load balancer (demo-alb in dev)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and the target groups."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR block of the VPC (where the tasks' dynamic host ports are)."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets of the load balancer, in at least two availability zones."
  type        = list(string)
}

variable "internal" {
  description = "Whether the load balancer is internal."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Deletion protection of the load balancer."
  type        = bool
  default     = true
}

variable "ingress_cidr_blocks" {
  description = "Client networks allowed on the production listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "test_ingress_cidr_blocks" {
  description = "Networks allowed on the test listener (the validation runner); never the internet."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.test_ingress_cidr_blocks, "0.0.0.0/0")
    error_message = "test_ingress_cidr_blocks must not contain 0.0.0.0/0: the test listener serves unreleased code."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener on 443; null serves HTTP on 80 only."
  type        = string
  default     = null
}

variable "test_listener_port" {
  description = "Port of the test listener CodeDeploy routes test traffic to."
  type        = number
  default     = 8080

  validation {
    condition     = var.test_listener_port != 80 && var.test_listener_port != 443
    error_message = "test_listener_port must differ from the production ports 80 and 443."
  }
}

variable "container_port" {
  description = "Port the container listens on (the target groups' port)."
  type        = number
  default     = 8080
}

variable "app_idle_timeout_seconds" {
  description = "The application's keep-alive idle timeout (IDLE_TIMEOUT_SECONDS, 75 by default)."
  type        = number
  default     = 75
}

variable "idle_timeout_seconds" {
  description = "Load balancer idle timeout; must stay below the application's keep-alive idle timeout."
  type        = number
  default     = 60

  validation {
    condition     = var.idle_timeout_seconds < var.app_idle_timeout_seconds
    error_message = "idle_timeout_seconds must be below app_idle_timeout_seconds: otherwise the load balancer reuses connections the application just closed (intermittent 502)."
  }
}

variable "app_drain_delay_seconds" {
  description = "The application's drain delay (DRAIN_DELAY_SECONDS): how long it keeps serving after SIGTERM."
  type        = number
  default     = 5
}

variable "deregistration_delay_seconds" {
  description = "Target group deregistration delay: just above the longest request, at least the application's drain delay."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay_seconds >= var.app_drain_delay_seconds && var.deregistration_delay_seconds <= 120
    error_message = "deregistration_delay_seconds must be at least app_drain_delay_seconds (in-flight requests are cut) and at most 120 (the default 300 makes every rollout slow)."
  }
}

variable "health_check_interval_seconds" {
  description = "Target group health check interval."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_interval_seconds >= 5 && var.health_check_interval_seconds <= 30
    error_message = "health_check_interval_seconds must be 5 to 30."
  }
}

variable "health_check_timeout_seconds" {
  description = "Target group health check timeout (below the interval)."
  type        = number
  default     = 3

  validation {
    condition     = var.health_check_timeout_seconds >= 2 && var.health_check_timeout_seconds < var.health_check_interval_seconds
    error_message = "health_check_timeout_seconds must be at least 2 and below the interval."
  }
}

variable "healthy_threshold" {
  description = "Consecutive successes before a target is healthy."
  type        = number
  default     = 2
}

variable "unhealthy_threshold" {
  description = "Consecutive failures before a target is unhealthy."
  type        = number
  default     = 2
}
