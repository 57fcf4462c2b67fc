variable "name" {
  description = "Prefix for every resource name (the stack name, e.g. demo)."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0))
    error_message = "cidr_block must be an IPv4 CIDR block such as 10.40.0.0/16."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets over; at least 2 so a refresh can replace instances in one zone while the other serves."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be 2 to 4: one zone leaves nowhere to move tasks during a refresh."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key that encrypts the flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the flow log group, in days."
  type        = number
  default     = 365
}
