output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group."
  value       = aws_autoscaling_group.this.name
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group (for the capacity provider)."
  value       = aws_autoscaling_group.this.arn
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "launch_template_latest_version" {
  description = "Newest launch template version: what orchestrate refresh --launch-template-version takes."
  value       = aws_launch_template.this.latest_version
}

output "instance_security_group_id" {
  description = "Security group of the container instances."
  value       = aws_security_group.instances.id
}

output "instance_refresh_preferences" {
  description = "The instance refresh preferences, for orchestrate refresh to start refreshes with the same ones."
  value = {
    MinHealthyPercentage      = var.refresh_min_healthy_percentage
    MaxHealthyPercentage      = var.refresh_max_healthy_percentage
    InstanceWarmup            = var.refresh_instance_warmup_seconds
    CheckpointPercentages     = var.refresh_checkpoint_percentages
    CheckpointDelay           = var.refresh_checkpoint_delay_seconds
    AutoRollback              = true
    SkipMatching              = true
    ScaleInProtectedInstances = var.refresh_scale_in_protected_instances
    StandbyInstances          = "Terminate"
  }
}
