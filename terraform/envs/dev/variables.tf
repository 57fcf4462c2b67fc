variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_cidr_block" {
  description = "IPv4 CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "instance_type" {
  description = "EC2 instance type of the container instances."
  type        = string
  default     = "t3.small"
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on 443; null serves HTTP on 80 only."
  type        = string
  default     = null
}

variable "alb_deletion_protection" {
  description = "Deletion protection of the load balancer."
  type        = bool
  default     = true
}

variable "test_ingress_cidr_blocks" {
  description = "Networks allowed on the test listener (the validation runner)."
  type        = list(string)
  default     = ["10.40.0.0/16"]
}

variable "initial_image_tag" {
  description = "Image tag of the first task definition revision (later ones come from CodeDeploy)."
  type        = string
  default     = "initial"
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may assume the deploy role."
  type        = string
  default     = "zerodowntime/ecs-zero-downtime"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the deploy role (the OIDC subject is repo:<repository>:environment:<name>)."
  type        = list(string)
  default     = ["dev"]
}
