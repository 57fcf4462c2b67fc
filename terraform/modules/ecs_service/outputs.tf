output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_arn" {
  description = "ARN of the first task definition revision."
  value       = aws_ecs_task_definition.this.arn
}

output "task_execution_role_arn" {
  description = "Execution role: the task definition template's executionRoleArn."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "Task role: the task definition template's taskRoleArn."
  value       = aws_iam_role.task.arn
}

output "log_group_name" {
  description = "Log group of the containers."
  value       = aws_cloudwatch_log_group.this.name
}

output "drain_delay_seconds" {
  description = "The application's drain delay (the target groups' deregistration delay must cover it)."
  value       = var.drain_delay_seconds
}
