# GitHub Actions authenticate with OpenID Connect: no stored AWS keys. The deploy role is limited
# to this repository's jobs in the named GitHub environments, and to what build.yml (push the
# image) and orchestrate (deploy, refresh) do. The Terraform role of infrastructure-update.yml is
# bootstrapped outside this configuration (it would otherwise have to create itself).

resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_policy_document" "github_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [for env in var.github_environments : "repo:${var.github_repository}:environment:${env}"]
    }
  }
}

resource "aws_iam_role" "github_deploy" {
  name                 = "${local.name}-github-deploy"
  assume_role_policy   = data.aws_iam_policy_document.github_assume.json
  max_session_duration = 3600
}

locals {
  arn = "arn:aws:%s:${var.region}:${data.aws_caller_identity.current.account_id}:%s"
}

# What `orchestrate deploy` and `orchestrate refresh` call, on these resources only; docs/iam.md
# lists them per command, and crates/orchestrate/tests/it/iam.rs checks every SDK call is here.
data "aws_iam_policy_document" "orchestrate" {
  statement {
    sid = "PushImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:CompleteLayerUpload",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
      "ecr:BatchGetImage",
      "ecr:DescribeImages",
      "ecr:DescribeImageScanFindings",
    ]
    resources = [module.ecr.repository_arn]
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "CodeDeploy"
    actions = [
      "codedeploy:CreateDeployment",
      "codedeploy:GetDeployment",
      "codedeploy:GetDeploymentTarget",
      "codedeploy:ListDeploymentTargets",
      "codedeploy:StopDeployment",
      "codedeploy:ContinueDeployment",
      "codedeploy:GetDeploymentGroup",
      "codedeploy:GetApplication",
      "codedeploy:GetApplicationRevision",
      "codedeploy:RegisterApplicationRevision",
    ]
    resources = [
      format(local.arn, "codedeploy", "application:${module.codedeploy.application_name}"),
      module.codedeploy.deployment_group_arn,
    ]
  }

  statement {
    sid       = "CodeDeployConfig"
    actions   = ["codedeploy:GetDeploymentConfig"]
    resources = [format(local.arn, "codedeploy", "deploymentconfig:*")]
  }

  statement {
    sid       = "CodeDeployHooks"
    actions   = ["codedeploy:PutLifecycleEventHookExecutionStatus"]
    resources = [format(local.arn, "codedeploy", "deploymentgroup:${module.codedeploy.application_name}/${module.codedeploy.deployment_group_name}")]
  }

  statement {
    sid = "EcsTaskDefinitions"
    # RegisterTaskDefinition and the Describe/List calls do not support resource-level permissions.
    actions   = ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid = "EcsClusterReads"
    actions = [
      "ecs:ListTasks",
      "ecs:DescribeTasks",
      "ecs:ListContainerInstances",
      "ecs:DescribeContainerInstances",
    ]
    resources = [
      format(local.arn, "ecs", "cluster/${module.cluster.cluster_name}"),
      format(local.arn, "ecs", "task/${module.cluster.cluster_name}/*"),
      format(local.arn, "ecs", "container-instance/${module.cluster.cluster_name}/*"),
    ]
  }

  statement {
    sid       = "EcsService"
    actions   = ["ecs:DescribeServices"]
    resources = [format(local.arn, "ecs", "service/${module.cluster.cluster_name}/${module.ecs_service.service_name}")]
  }

  statement {
    sid     = "PassTaskRoles"
    actions = ["iam:PassRole"]
    resources = [
      module.ecs_service.task_execution_role_arn,
      module.ecs_service.task_role_arn,
    ]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "InstanceRefresh"
    actions = [
      "autoscaling:StartInstanceRefresh",
      "autoscaling:CancelInstanceRefresh",
      "autoscaling:RollbackInstanceRefresh",
    ]
    resources = [module.compute.autoscaling_group_arn]
  }

  statement {
    sid = "Describe"
    # Describe calls of Auto Scaling, ELBv2 and EC2 launch templates do not support resource-level permissions.
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeInstanceRefreshes",
      "autoscaling:DescribeScalingActivities",
      "elasticloadbalancing:DescribeTargetHealth",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeRules",
      "ec2:DescribeLaunchTemplateVersions",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_policy" "orchestrate" {
  name        = "${local.name}-orchestrate"
  description = "What orchestrate deploy/refresh and the image push need, on the dev stack only"
  policy      = data.aws_iam_policy_document.orchestrate.json
}

resource "aws_iam_role_policy_attachment" "github_deploy" {
  role       = aws_iam_role.github_deploy.name
  policy_arn = aws_iam_policy.orchestrate.arn
}
