output "application_name" {
  description = "CodeDeploy application."
  value       = aws_codedeploy_app.this.name
}

output "deployment_group_name" {
  description = "CodeDeploy deployment group."
  value       = aws_codedeploy_deployment_group.this.deployment_group_name
}

output "deployment_group_arn" {
  description = "ARN of the deployment group (IAM)."
  value       = aws_codedeploy_deployment_group.this.arn
}

output "alarm_names" {
  description = "Alarms that stop a deployment."
  value       = aws_codedeploy_deployment_group.this.alarm_configuration[0].alarms
}
