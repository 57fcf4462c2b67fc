variable "name" {
  description = "Prefix for resource names (the stack name, e.g. demo)."
  type        = string
}

variable "asg_name" {
  description = "Name of the Auto Scaling group (demo-asg in dev)."
  type        = string
}

variable "launch_template_name" {
  description = "Name of the launch template (demo-lt in dev)."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster the instances join."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the instances."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the instances, in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets (availability zones)."
  }
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer: the only source allowed to reach the instances."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
  default     = "t3.small"
}

variable "ami_id" {
  description = "AMI to launch; null takes the current ECS-optimized Amazon Linux 2023 AMI."
  type        = string
  default     = null
}

variable "root_volume_gib" {
  description = "Size of the encrypted root volume in GiB."
  type        = number
  default     = 30
}

variable "container_stop_timeout_seconds" {
  description = "ECS agent default stop timeout (ECS_CONTAINER_STOP_TIMEOUT); the task definition's stopTimeout overrides it."
  type        = number
  default     = 30
}

variable "min_size" {
  description = "Minimum number of instances."
  type        = number
  default     = 3
}

variable "max_size" {
  description = "Maximum number of instances; leave room above desired_capacity so the refresh can launch before it terminates."
  type        = number
  default     = 6
}

variable "desired_capacity" {
  description = "Initial number of instances (ECS managed scaling adjusts it later)."
  type        = number
  default     = 3

  validation {
    condition     = var.desired_capacity >= 2
    error_message = "desired_capacity must be at least 2: with one instance every refresh is an outage."
  }
}

variable "health_check_type" {
  description = "Health check type of the group; ELB so failing load balancer checks replace an instance."
  type        = string
  default     = "ELB"

  validation {
    condition     = var.health_check_type == "ELB"
    error_message = "health_check_type must be ELB: with EC2 an instance whose tasks fail the load balancer checks is never replaced and a refresh counts it healthy."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds after launch before health checks count (boot + ECS agent registration + first task)."
  type        = number
  default     = 300

  validation {
    condition     = var.health_check_grace_period_seconds >= 60
    error_message = "health_check_grace_period_seconds must be at least 60: instances would be replaced before they finish booting."
  }
}

variable "instance_target_group_arns" {
  description = "Target groups that register the instances themselves (not the ECS ones, where ECS registers tasks on dynamic ports)."
  type        = list(string)
  default     = []
}

variable "protect_from_scale_in" {
  description = "Scale-in protection for new instances; required by the capacity provider's managed termination protection."
  type        = bool
  default     = true
}

variable "refresh_min_healthy_percentage" {
  description = "Instance refresh MinHealthyPercentage; with MaxHealthyPercentage 200, 100 keeps every instance in service while replacements launch first."
  type        = number
  default     = 100

  validation {
    condition     = var.refresh_min_healthy_percentage >= 50 && var.refresh_min_healthy_percentage <= 100
    error_message = "refresh_min_healthy_percentage must be 50 to 100."
  }
}

variable "refresh_max_healthy_percentage" {
  description = "Instance refresh MaxHealthyPercentage; above 100 launches replacements before terminating."
  type        = number
  default     = 200

  validation {
    condition     = var.refresh_max_healthy_percentage > 100 && var.refresh_max_healthy_percentage <= 200
    error_message = "refresh_max_healthy_percentage must be 101 to 200: at 100 the refresh terminates before it launches, capacity dips."
  }

  # StartInstanceRefresh refuses a range wider than 100 (ValidationError).
  validation {
    condition     = var.refresh_max_healthy_percentage - var.refresh_min_healthy_percentage <= 100
    error_message = "refresh_max_healthy_percentage may exceed refresh_min_healthy_percentage by at most 100: Auto Scaling refuses the refresh otherwise."
  }
}

variable "refresh_instance_warmup_seconds" {
  description = "Instance refresh warmup: agent registration + task start + healthy threshold x interval."
  type        = number
  default     = 180

  validation {
    condition     = var.refresh_instance_warmup_seconds >= 60
    error_message = "refresh_instance_warmup_seconds must be at least 60: a shorter warmup moves on before tasks are healthy."
  }
}

variable "refresh_checkpoint_percentages" {
  description = "Checkpoints of the instance refresh, ending at 100."
  type        = list(number)
  default     = [34, 67, 100]

  validation {
    condition     = length(var.refresh_checkpoint_percentages) > 0 && var.refresh_checkpoint_percentages[length(var.refresh_checkpoint_percentages) - 1] == 100
    error_message = "refresh_checkpoint_percentages must end with 100."
  }
}

variable "refresh_checkpoint_delay_seconds" {
  description = "Pause at each checkpoint, in seconds (time for the probe and ECS to reach steady state)."
  type        = number
  default     = 120
}

variable "refresh_scale_in_protected_instances" {
  description = "What the instance refresh does with scale-in protected instances: Refresh replaces them (managed termination protection protects every instance that runs tasks)."
  type        = string
  default     = "Refresh"

  validation {
    condition     = var.refresh_scale_in_protected_instances == "Refresh" || !var.protect_from_scale_in
    error_message = "refresh_scale_in_protected_instances must be Refresh while protect_from_scale_in is on: Wait stalls the refresh for an hour and fails, Ignore never replaces the protected instances."
  }
}
