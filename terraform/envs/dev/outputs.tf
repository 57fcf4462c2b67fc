output "alb_dns_name" {
  description = "Where the service answers (the probe's URL)."
  value       = module.traffic.alb_dns_name
}

output "ecr_repository_url" {
  description = "Image repository (build.yml pushes <url>:<commit sha>)."
  value       = module.ecr.repository_url
}

output "autoscaling_group_name" {
  description = "Auto Scaling group (orchestrate refresh --asg)."
  value       = module.compute.autoscaling_group_name
}

output "launch_template_latest_version" {
  description = "Newest launch template version (orchestrate refresh --launch-template-version)."
  value       = module.compute.launch_template_latest_version
}

output "instance_refresh_preferences" {
  description = "The preferences orchestrate refresh starts refreshes with."
  value       = module.compute.instance_refresh_preferences
}

output "codedeploy_application" {
  description = "CodeDeploy application (orchestrate deploy --application)."
  value       = module.codedeploy.application_name
}

output "codedeploy_deployment_group" {
  description = "CodeDeploy deployment group (orchestrate deploy --deployment-group)."
  value       = module.codedeploy.deployment_group_name
}

output "task_execution_role_arn" {
  description = "executionRoleArn of the task definition template."
  value       = module.ecs_service.task_execution_role_arn
}

output "task_role_arn" {
  description = "taskRoleArn of the task definition template."
  value       = module.ecs_service.task_role_arn
}

output "github_deploy_role_arn" {
  description = "Role the workflows assume through OIDC (repository variable AWS_DEPLOY_ROLE_ARN)."
  value       = aws_iam_role.github_deploy.arn
}

output "orchestrate_policy_json" {
  description = "The least-privilege policy of orchestrate, as JSON."
  value       = data.aws_iam_policy_document.orchestrate.json
}
