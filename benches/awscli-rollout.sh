#!/usr/bin/env bash
# The Stream Manager rollout of pipelines/stream-manager.yaml written the way an engineer
# scripts it with aws-cli v1 and its waiters, following the Red5 Pro guide's "Updating
# Stream Manager Image for Autoscaling". benches/rollout_bench.py runs it against the
# emulator as the baseline red5-rollout is compared with; it works against real AWS too.
#
#   awscli-rollout.sh --version V --artifact-url URL --artifact-sha256 HEX
#                     [--endpoint-url URL] [--commit SHA]
#
# Steps: read the group's launch template version and its image; launch a builder from
# that image; wait until it runs (`aws ec2 wait instance-running`) and its SSM agent is
# Online (polled every 5 s: aws-cli has no waiter for it); run the update script with
# AWS-RunShellScript and `aws ssm wait command-executed`; stop the builder
# (`aws ec2 wait instance-stopped`); image it (`aws ec2 wait image-available`); add a launch
# template version with the new image; start an instance refresh that carries it, polled
# every 15 s until it ends (no waiter exists for that either); terminate the builder; tag
# the group with the version it runs.
#
# Needs `aws` (v1) and python3 on PATH, and credentials and region as aws-cli reads them.
set -euo pipefail

# The fleet and the builder, as pipelines/stream-manager.yaml describes them.
REGION="${AWS_REGION:-us-east-1}"
PIPELINE=stream-manager
GROUP=red5pro-sm-asg
TEMPLATE=red5pro-sm
INSTANCE_TYPE=m5.large
INSTANCE_TYPE_SHORT=m5large
SUBNET_NAME=red5pro-sm-subnet-a
SECURITY_GROUP_NAME=red5pro-sm-sg
INSTANCE_PROFILE=red5pro-sm-builder
KEY_PAIR=red5pro-sm-key
VOLUME_GB=16
EXECUTION_TIMEOUT=1800
# How often the two steps without a waiter are polled, and for how long at most.
SSM_POLL_SECONDS=5
SSM_READY_TIMEOUT=900
REFRESH_POLL_SECONDS=15
REFRESH_TIMEOUT=7200

die() {
    echo "awscli-rollout: $*" >&2
    exit 1
}

log() {
    echo "$(date -u +%H:%M:%S) $*" >&2
}

endpoint="" version="" artifact_url="" artifact_sha256="" commit="manual"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --endpoint-url) endpoint="${2:?--endpoint-url needs a value}"; shift 2 ;;
        --version) version="${2:?--version needs a value}"; shift 2 ;;
        --artifact-url) artifact_url="${2:?--artifact-url needs a value}"; shift 2 ;;
        --artifact-sha256) artifact_sha256="${2:?--artifact-sha256 needs a value}"; shift 2 ;;
        --commit) commit="${2:?--commit needs a value}"; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[[ -n "$version" && -n "$artifact_url" && -n "$artifact_sha256" ]] \
    || die "--version, --artifact-url and --artifact-sha256 are required"

# Every call goes to the same region and, for the benchmark, to the emulator.
awsr() {
    if [[ -n "$endpoint" ]]; then
        aws --region "$REGION" --endpoint-url "$endpoint" "$@"
    else
        aws --region "$REGION" "$@"
    fi
}

work="$(mktemp -d)"
builder=""
terminated=0
# A failed run must not leave the builder running and billing.
cleanup() {
    local status=$?
    if [[ -n "$builder" && $terminated -eq 0 ]]; then
        log "terminating builder $builder after a failure"
        awsr ec2 terminate-instances --instance-ids "$builder" >/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

date_tag="$(date -u +%Y%m%d)"
run_id="awscli-$(date -u +%Y%m%dT%H%M%S)-$$"
image_name="SM-red5pro-server-${version}-${date_tag}-${INSTANCE_TYPE_SHORT}"
template_description="${image_name}-template"

# JSON tag lists, built with python3 so that no value needs quoting by hand.
tags_json() {
    python3 -c '
import json, sys
pairs = sys.argv[1:]
print(json.dumps([{"Key": k, "Value": v} for k, v in zip(pairs[::2], pairs[1::2])]))
' "$@"
}
release_tags=(red5-rollout:pipeline "$PIPELINE" red5-rollout:version "$version"
    red5-rollout:commit "$commit" red5-rollout:run "$run_id" red5-rollout:date "$date_tag")

# 1. What the group launches now: its launch template version, and that version's image.
log "reading group $GROUP"
# Output is captured before it is split, so that a failed call stops the script.
group_template="$(awsr autoscaling describe-auto-scaling-groups \
    --auto-scaling-group-names "$GROUP" \
    --query 'AutoScalingGroups[0].LaunchTemplate.[LaunchTemplateName,Version]' --output text)"
read -r template_name template_version <<<"$group_template"
[[ "$template_name" == "$TEMPLATE" ]] || die "group $GROUP uses template $template_name, not $TEMPLATE"
base_image="$(awsr ec2 describe-launch-template-versions --launch-template-name "$TEMPLATE" \
    --versions "$template_version" \
    --query 'LaunchTemplateVersions[0].LaunchTemplateData.ImageId' --output text)"
log "group $GROUP runs $TEMPLATE version $template_version, image $base_image"

subnet="$(awsr ec2 describe-subnets --filters "Name=tag:Name,Values=$SUBNET_NAME" \
    --query 'Subnets[0].SubnetId' --output text)"
security_group="$(awsr ec2 describe-security-groups \
    --filters "Name=group-name,Values=$SECURITY_GROUP_NAME" \
    --query 'SecurityGroups[0].GroupId' --output text)"
[[ "$subnet" == subnet-* ]] || die "no subnet named $SUBNET_NAME"
[[ "$security_group" == sg-* ]] || die "no security group named $SECURITY_GROUP_NAME"

# 2. The builder, tagged at launch like red5-rollout's.
builder_tags="$(tags_json Name "red5-rollout builder $PIPELINE" "${release_tags[@]}" \
    red5-rollout:role builder red5-rollout:source-image "$base_image")"
builder="$(awsr ec2 run-instances --count 1 --image-id "$base_image" \
    --instance-type "$INSTANCE_TYPE" --subnet-id "$subnet" \
    --security-group-ids "$security_group" \
    --iam-instance-profile "Name=$INSTANCE_PROFILE" --key-name "$KEY_PAIR" \
    --block-device-mappings "[{\"DeviceName\":\"/dev/sda1\",\"Ebs\":{\"VolumeSize\":$VOLUME_GB,\"VolumeType\":\"gp3\",\"DeleteOnTermination\":true}}]" \
    --metadata-options HttpTokens=required \
    --tag-specifications "[{\"ResourceType\":\"instance\",\"Tags\":$builder_tags},{\"ResourceType\":\"volume\",\"Tags\":$builder_tags}]" \
    --query 'Instances[0].InstanceId' --output text)"
log "launched builder $builder; waiting until it runs"
awsr ec2 wait instance-running --instance-ids "$builder"

log "builder $builder runs; waiting for its SSM agent"
deadline=$((SECONDS + SSM_READY_TIMEOUT))
while :; do
    ping="$(awsr ssm describe-instance-information \
        --filters "Key=InstanceIds,Values=$builder" \
        --query 'InstanceInformationList[0].PingStatus' --output text)"
    [[ "$ping" == "Online" ]] && break
    (( SECONDS < deadline )) || die "the SSM agent of $builder is not online after ${SSM_READY_TIMEOUT}s"
    sleep "$SSM_POLL_SECONDS"
done

# 3. The update script of the pipeline, with the release's values filled in.
read -r -d '' script <<'SCRIPT' || true
#!/bin/bash
# Install Red5 Pro @VERSION@ over /usr/local/red5pro, keeping the Stream Manager's
# own configuration. Runs as root through SSM (AWS-RunShellScript).
set -euo pipefail
artifact_url='@ARTIFACT_URL@'
artifact_sha256='@ARTIFACT_SHA256@'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "downloading $artifact_url"
case "$artifact_url" in
  s3://*) aws s3 cp --only-show-errors "$artifact_url" "$work/red5pro.zip" ;;
  *) curl --fail --silent --show-error --location --retry 3 -o "$work/red5pro.zip" "$artifact_url" ;;
esac
echo "$artifact_sha256  $work/red5pro.zip" | sha256sum --check --strict

echo "stopping red5pro"
systemctl stop red5pro || true

keep=/usr/local/red5pro/webapps/streammanager/WEB-INF
cp -a "$keep/red5-web.properties" "$work/red5-web.properties"
cp -a "$keep/applicationContext.xml" "$work/applicationContext.xml" 2>/dev/null || true
unzip -q -o "$work/red5pro.zip" -d "$work/unpacked"
src=$(find "$work/unpacked" -maxdepth 1 -mindepth 1 -type d | head -n 1)
rsync -a --exclude 'webapps/streammanager/WEB-INF/red5-web.properties' "$src/" /usr/local/red5pro/
cp -a "$work/red5-web.properties" "$keep/red5-web.properties"
[ -f "$work/applicationContext.xml" ] && cp -a "$work/applicationContext.xml" "$keep/applicationContext.xml"
echo '@VERSION@' > /usr/local/red5pro/.red5-rollout-version

echo "starting red5pro"
systemctl start red5pro
for i in $(seq 1 60); do
  if curl --silent --fail --output /dev/null http://127.0.0.1:5080/; then
    echo "red5pro @VERSION@ answers on port 5080"
    exit 0
  fi
  sleep 5
done
echo "red5pro did not answer on port 5080 within 5 minutes" >&2
exit 1
SCRIPT
script="${script//@VERSION@/$version}"
script="${script//@ARTIFACT_URL@/$artifact_url}"
script="${script//@ARTIFACT_SHA256@/$artifact_sha256}"
printf '%s\n' "$script" | python3 -c '
import json, sys
print(json.dumps({"commands": sys.stdin.read().splitlines(), "executionTimeout": [sys.argv[1]]}))
' "$EXECUTION_TIMEOUT" >"$work/parameters.json"

command_id="$(awsr ssm send-command --instance-ids "$builder" \
    --document-name AWS-RunShellScript --parameters "file://$work/parameters.json" \
    --timeout-seconds 600 --comment "update $PIPELINE to $version" \
    --query 'Command.CommandId' --output text)"
log "running the update script as command $command_id"
if ! awsr ssm wait command-executed --command-id "$command_id" --instance-id "$builder"; then
    awsr ssm get-command-invocation --command-id "$command_id" --instance-id "$builder" \
        --query '[Status,StandardOutputContent,StandardErrorContent]' --output text >&2 || true
    die "the update script failed on $builder"
fi
awsr ssm get-command-invocation --command-id "$command_id" --instance-id "$builder" \
    --query 'StandardOutputContent' --output text | tail -n 1 >&2

# 4. Stop the builder for the cleanest image, then image it.
log "stopping builder $builder"
awsr ec2 stop-instances --instance-ids "$builder" >/dev/null
awsr ec2 wait instance-stopped --instance-ids "$builder"

image_tags="$(tags_json "${release_tags[@]}" red5-rollout:source-image "$base_image")"
image="$(awsr ec2 create-image --instance-id "$builder" --name "$image_name" \
    --tag-specifications "[{\"ResourceType\":\"image\",\"Tags\":$image_tags}]" \
    --query 'ImageId' --output text)"
log "creating image $image ($image_name)"
awsr ec2 wait image-available --image-ids "$image"

# 4b. AWS cannot roll back a refresh of a group on $Default / $Latest (it refuses
# AutoRollback there): pin the group to the number its alias stands for, before the new
# version exists.
current="$(awsr autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$GROUP" \
    --query 'AutoScalingGroups[0].LaunchTemplate.Version' --output text)"
case "$current" in
    '$Default' | '$Latest')
        field=DefaultVersionNumber
        [[ "$current" == '$Latest' ]] && field=LatestVersionNumber
        number="$(awsr ec2 describe-launch-templates --launch-template-names "$TEMPLATE" \
            --query "LaunchTemplates[0].$field" --output text)"
        awsr autoscaling update-auto-scaling-group --auto-scaling-group-name "$GROUP" \
            --launch-template "LaunchTemplateName=$TEMPLATE,Version=$number"
        log "pinned $GROUP from $current to version $number"
        ;;
esac

# 5. A new launch template version with the new image and the fleet's settings.
user_data="$(base64 -w0 <<'USERDATA'
#!/bin/bash
# Give every Stream Manager a unique streammanager.ip, as the guide requires behind a
# load balancer.
uid=$(cat /dev/urandom | tr -dc 'a-zA-Z0-9' | fold -w 16 | head -n 1 | tr '[:upper:]' '[:lower:]')
smhost=$(echo "$uid.com")
sed -i "s/\(streammanager\.ip=\).*\$/\1${smhost}/" /usr/local/red5pro/webapps/streammanager/WEB-INF/red5-web.properties
USERDATA
)"
template_tags="$(tags_json "${release_tags[@]}")"
cat >"$work/template-data.json" <<JSON
{
  "ImageId": "$image",
  "InstanceType": "$INSTANCE_TYPE",
  "KeyName": "$KEY_PAIR",
  "BlockDeviceMappings": [{"DeviceName": "/dev/sda1",
    "Ebs": {"VolumeSize": $VOLUME_GB, "VolumeType": "gp3", "DeleteOnTermination": true}}],
  "NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": true,
    "Groups": ["$security_group"]}],
  "UserData": "$user_data",
  "TagSpecifications": [{"ResourceType": "instance", "Tags": $template_tags}]
}
JSON
new_version="$(awsr ec2 create-launch-template-version --launch-template-name "$TEMPLATE" \
    --version-description "$template_description" \
    --launch-template-data "file://$work/template-data.json" \
    --query 'LaunchTemplateVersion.VersionNumber' --output text)"
log "launch template $TEMPLATE version $new_version launches $image"

# 6. Roll the fleet: launch replacements before terminating, roll back on failure, and
# replace the instances the guide protects from scale-in (AWS's default waits on them).
refresh="$(awsr autoscaling start-instance-refresh --auto-scaling-group-name "$GROUP" \
    --desired-configuration "{\"LaunchTemplate\":{\"LaunchTemplateName\":\"$TEMPLATE\",\"Version\":\"$new_version\"}}" \
    --preferences '{"MinHealthyPercentage":100,"MaxHealthyPercentage":200,"InstanceWarmup":180,"SkipMatching":true,"AutoRollback":true,"ScaleInProtectedInstances":"Refresh"}' \
    --query 'InstanceRefreshId' --output text)"
log "instance refresh $refresh started"
deadline=$((SECONDS + REFRESH_TIMEOUT))
while :; do
    progress="$(awsr autoscaling describe-instance-refreshes \
        --auto-scaling-group-name "$GROUP" --instance-refresh-ids "$refresh" \
        --query 'InstanceRefreshes[0].[Status,PercentageComplete]' --output text)"
    read -r status percentage <<<"$progress"
    case "$status" in
        Successful) break ;;
        Failed|Cancelled|RollbackSuccessful|RollbackFailed)
            die "instance refresh $refresh ended $status" ;;
    esac
    (( SECONDS < deadline )) || die "instance refresh $refresh still $status after ${REFRESH_TIMEOUT}s"
    log "refresh $refresh: $status $percentage%"
    sleep "$REFRESH_POLL_SECONDS"
done
log "instance refresh $refresh successful"

# 7. Clean up and record what the group runs.
awsr ec2 terminate-instances --instance-ids "$builder" >/dev/null
terminated=1
awsr autoscaling create-or-update-tags --tags "[
  {\"ResourceId\":\"$GROUP\",\"ResourceType\":\"auto-scaling-group\",\"Key\":\"red5-rollout:version\",\"Value\":\"$version\",\"PropagateAtLaunch\":true},
  {\"ResourceId\":\"$GROUP\",\"ResourceType\":\"auto-scaling-group\",\"Key\":\"red5-rollout:commit\",\"Value\":\"$commit\",\"PropagateAtLaunch\":true}]"
log "group $GROUP runs $version (template $TEMPLATE version $new_version, image $image)"
echo "$image $TEMPLATE:$new_version $refresh"
