#!/usr/bin/env bash
# Drives localaws with the real AWS command-line client, as a user would: describe the Auto
# Scaling group, add a launch template version, start an instance refresh, poll it to
# Successful, and describe target health; then a blue/green release through CodeDeploy: describe
# the deployment group, register a task definition, create a deployment with an AppSpec, poll it
# (ending the termination wait early) to Succeeded.
#
#   scripts/awscli.sh [LOCALAWS_BIN] [AWS_BIN]
#
# LOCALAWS_BIN defaults to the debug build under $CARGO_TARGET_DIR (or ./target); AWS_BIN to
# `aws` on PATH. Exits non-zero on the first step that does not do what it should.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
localaws="${1:-$target_dir/debug/localaws}"
aws_bin="${2:-aws}"
[ -x "$localaws" ] || { echo "no localaws binary at $localaws (cargo build -p localaws)" >&2; exit 2; }
command -v "$aws_bin" >/dev/null || [ -x "$aws_bin" ] || { echo "no aws client at $aws_bin" >&2; exit 2; }

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Free ports for everything: the API and both listeners.
"$localaws" default-stack | sed -e 's/^port = 800[01]/port = 0/' -e 's/^time_scale = .*/time_scale = 60.0/' >"$work/stack.toml"
"$localaws" serve --stack "$work/stack.toml" --port 0 --state-dir "$work/state" \
  --ready-file "$work/ready.json" >"$work/localaws.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  [ -s "$work/ready.json" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/localaws.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/ready.json" ] || { echo "localaws did not become ready" >&2; tail -20 "$work/localaws.log" >&2; exit 1; }

endpoint=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/ready.json")
export AWS_ENDPOINT_URL="$endpoint" AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_PAGER=""
aws() { "$aws_bin" "$@"; }
echo "localaws at $endpoint"

step() { printf '\n$ aws %s\n' "$*"; }

step autoscaling describe-auto-scaling-groups
desired=$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names demo-asg \
  --query 'AutoScalingGroups[0].DesiredCapacity' --output text)
in_service=$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names demo-asg \
  --query "length(AutoScalingGroups[0].Instances[?LifecycleState=='InService'])" --output text)
echo "desired $desired, in service $in_service"
[ "$desired" = 3 ] && [ "$in_service" = 3 ]

step ec2 create-launch-template-version
version=$(aws ec2 create-launch-template-version --launch-template-name demo-lt --source-version 1 \
  --launch-template-data '{"ImageId":"ami-0ecs000000000002"}' \
  --query 'LaunchTemplateVersion.VersionNumber' --output text)
echo "launch template version $version"
[ "$version" = 2 ]

step autoscaling start-instance-refresh
id=$(aws autoscaling start-instance-refresh --auto-scaling-group-name demo-asg \
  --desired-configuration "{\"LaunchTemplate\":{\"LaunchTemplateName\":\"demo-lt\",\"Version\":\"$version\"}}" \
  --preferences '{"MinHealthyPercentage":90,"InstanceWarmup":60}' \
  --query InstanceRefreshId --output text)
echo "instance refresh $id"

step autoscaling describe-instance-refreshes "(polled)"
status=
for _ in $(seq 240); do
  line=$(aws autoscaling describe-instance-refreshes --auto-scaling-group-name demo-asg \
    --instance-refresh-ids "$id" \
    --query 'InstanceRefreshes[0].[Status,PercentageComplete,InstancesToUpdate]' --output text)
  status=${line%%$'\t'*}
  echo "$line"
  case "$status" in Successful | Failed | Cancelled | Rollback*) break ;; esac
  sleep 0.5
done
[ "$status" = Successful ] || { echo "refresh ended $status" >&2; exit 1; }
versions=$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names demo-asg \
  --query 'AutoScalingGroups[0].Instances[].LaunchTemplate.Version' --output text)
echo "instance launch template versions: $versions"
[ "$(echo "$versions" | tr '\t' '\n' | sort -u)" = "$version" ]

step elbv2 describe-target-health
tg=$(aws elbv2 describe-target-groups --names demo-tg-blue --query 'TargetGroups[0].TargetGroupArn' --output text)
for _ in $(seq 100); do
  states=$(aws elbv2 describe-target-health --target-group-arn "$tg" \
    --query 'TargetHealthDescriptions[].TargetHealth.State' --output text | tr '\t' '\n' | sort | uniq -c | tr -s ' ')
  [ "$states" = " 3 healthy" ] && break
  sleep 0.2
done
aws elbv2 describe-target-health --target-group-arn "$tg" \
  --query 'TargetHealthDescriptions[].[Target.Id,Target.Port,TargetHealth.State]' --output text
[ "$states" = " 3 healthy" ] || { echo "target health: $states" >&2; exit 1; }

step deploy get-deployment-group
config=$(aws deploy get-deployment-group --application-name demo-cd-app --deployment-group-name demo-dg \
  --query 'deploymentGroupInfo.deploymentConfigName' --output text)
echo "deployment config $config"
[ "$config" = CodeDeployDefault.ECSCanary10Percent5Minutes ]

step ecs register-task-definition
td=$(aws ecs register-task-definition --family demo-web --network-mode bridge \
  --container-definitions '[{"name":"web","image":"server","essential":true,"stopTimeout":10,"portMappings":[{"containerPort":8080,"hostPort":0}],"environment":[{"name":"APP_VERSION","value":"v2"},{"name":"DRAIN_DELAY_SECONDS","value":"1"},{"name":"SHUTDOWN_TIMEOUT_SECONDS","value":"5"}]}]' \
  --query taskDefinition.taskDefinitionArn --output text)
echo "task definition $td"

step deploy create-deployment
revision=$(python3 - "$td" <<'PY'
import json, sys
appspec = f'''version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: "{sys.argv[1]}"
        LoadBalancerInfo:
          ContainerName: "web"
          ContainerPort: 8080
'''
print(json.dumps({"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}}))
PY
)
deployment=$(aws deploy create-deployment --application-name demo-cd-app --deployment-group-name demo-dg \
  --revision "$revision" --query deploymentId --output text)
echo "deployment $deployment"

step deploy get-deployment "(polled)"
status=
continued=
for _ in $(seq 240); do
  status=$(aws deploy get-deployment --deployment-id "$deployment" --query deploymentInfo.status --output text)
  echo "$status"
  case "$status" in Succeeded | Failed | Stopped) break ;; esac
  if [ "$status" = Baking ] && [ -z "$continued" ]; then
    continued=1
    step deploy continue-deployment --deployment-wait-type TERMINATION_WAIT
    aws deploy continue-deployment --deployment-id "$deployment" --deployment-wait-type TERMINATION_WAIT
  fi
  sleep 0.5
done
[ "$status" = Succeeded ] || {
  aws deploy get-deployment --deployment-id "$deployment" --query deploymentInfo.errorInformation >&2
  exit 1
}
serving=$(aws ecs describe-services --cluster demo-cluster --services demo-svc \
  --query 'services[0].taskDefinition' --output text)
echo "demo-svc runs $serving"
[ "$serving" = "$td" ]

echo
echo "awscli against localaws: ok"
