variable "name" {
  description = "Repository name."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the images at rest."
  type        = string
}

variable "keep_images" {
  description = "How many tagged images to keep; rollbacks need the previous releases."
  type        = number
  default     = 50

  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5, or a rollback may find its image expired."
  }
}
