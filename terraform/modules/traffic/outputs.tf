output "alb_arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch dimension)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "production_listener_arn" {
  description = "Listener that serves production traffic (HTTPS when a certificate is given)."
  value       = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.production.arn
}

output "test_listener_arn" {
  description = "Listener CodeDeploy routes test traffic to."
  value       = aws_lb_listener.test.arn
}

output "target_group_names" {
  description = "Blue and green target group names."
  value       = { blue = aws_lb_target_group.blue.name, green = aws_lb_target_group.green.name }
}

output "target_group_arns" {
  description = "Blue and green target group ARNs."
  value       = { blue = aws_lb_target_group.blue.arn, green = aws_lb_target_group.green.arn }
}

output "target_group_arn_suffixes" {
  description = "Blue and green target group ARN suffixes (CloudWatch dimensions)."
  value       = { blue = aws_lb_target_group.blue.arn_suffix, green = aws_lb_target_group.green.arn_suffix }
}
