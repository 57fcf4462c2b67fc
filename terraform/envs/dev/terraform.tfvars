region                   = "eu-west-1"
instance_type            = "t3.small"
test_ingress_cidr_blocks = ["10.40.0.0/16"]
github_environments      = ["dev"]
