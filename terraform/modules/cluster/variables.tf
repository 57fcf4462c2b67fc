variable "cluster_name" {
  description = "Name of the ECS cluster (demo-cluster in dev)."
  type        = string
}

variable "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group whose instances join the cluster."
  type        = string
}

variable "managed_draining" {
  description = "Capacity provider managed draining: ECS drains an instance before Auto Scaling terminates it."
  type        = string
  default     = "ENABLED"

  validation {
    condition     = var.managed_draining == "ENABLED"
    error_message = "managed_draining must be ENABLED: without it an instance refresh terminates instances under running tasks."
  }
}

variable "managed_termination_protection" {
  description = "Capacity provider managed termination protection (needs protect_from_scale_in on the group and scale_in_protected_instances = Refresh on its instance refresh)."
  type        = string
  default     = "ENABLED"

  validation {
    condition     = contains(["ENABLED", "DISABLED"], var.managed_termination_protection)
    error_message = "managed_termination_protection must be ENABLED or DISABLED."
  }
}

variable "target_capacity" {
  description = "Managed scaling target utilisation in percent; below 100 keeps spare room for replacement tasks."
  type        = number
  default     = 80

  validation {
    condition     = var.target_capacity >= 1 && var.target_capacity <= 100
    error_message = "target_capacity must be a percentage from 1 to 100."
  }
}

variable "instance_warmup_seconds" {
  description = "Seconds a new instance needs before it counts towards capacity metrics."
  type        = number
  default     = 180
}
