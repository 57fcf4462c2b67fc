terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0"
    }
  }

  # State in S3 with locking; bucket, key and region come from -backend-config at init.
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "ecs-zero-downtime"
      Environment = "dev"
      ManagedBy   = "terraform"
    }
  }
}
