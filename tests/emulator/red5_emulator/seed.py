"""Build the Stream Manager fleet of the Red5 Pro AWS guide, as an operator would have.

Everything goes through boto3 against the emulator's endpoint, like any
client, so the seed also exercises the server. The names are fixed because
the runner's pipelines resolve resources by name. Nothing carries a
``red5-rollout:*`` tag: this is the fleet before the runner ever touched it,
with what a production fleet holds that the runner does not manage (an
instance profile, IMDSv2, detailed monitoring, encrypted volumes, a
recordings volume, instance tags, scale-in protection).

- VPC ``red5pro-vpc`` (10.0.0.0/16) with public subnets ``red5pro-sm-subnet-a``
  (10.0.1.0/24, us-east-1a) and ``red5pro-sm-subnet-b`` (10.0.2.0/24, us-east-1b),
  which give instances a public IP as Red5 Pro's VPC setup does (so the builder
  reaches SSM without endpoints);
- security groups ``red5pro-sm-sg`` (tcp 5080, 443, 22) and ``red5pro-db-sg``
  (tcp 3306 from red5pro-sm-sg);
- IAM role and instance profile ``red5pro-sm-builder`` with
  AmazonSSMManagedInstanceCore; key pair ``red5pro-sm-key``;
- ALB ``red5pro-sm-alb``, target group ``red5pro-sm-tg`` (HTTP 5080, health
  check ``/``), listener HTTP 80 forwarding to it;
- two Red5 Pro 12.3.0 AMIs, one per pipeline (``stream-manager`` and
  ``stream-manager-legacy``), imaged from stopped seed instances of an
  Amazon Linux 2 image: root device ``/dev/xvda``, an 8 GiB root snapshot;
- launch template ``red5pro-sm`` (version 1, the default) and group
  ``red5pro-sm-asg`` on its ``$Default`` version, new instances protected
  from scale in;
- launch configuration ``SM-red5pro-server-12.3.0-nov01-m5large-LC`` and
  group ``red5pro-sm-legacy-asg``.

Seeding an already seeded emulator changes nothing: it reports the fleet
that is there.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any

REGION = "us-east-1"
VERSION = "12.3.0"
VPC_NAME = "red5pro-vpc"
SUBNETS = (
    ("red5pro-sm-subnet-a", "10.0.1.0/24", "us-east-1a"),
    ("red5pro-sm-subnet-b", "10.0.2.0/24", "us-east-1b"),
)
SM_SG = "red5pro-sm-sg"
DB_SG = "red5pro-db-sg"
BUILDER = "red5pro-sm-builder"
SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
KEY_NAME = "red5pro-sm-key"
ALB_NAME = "red5pro-sm-alb"
TG_NAME = "red5pro-sm-tg"
TEMPLATE_NAME = "red5pro-sm"
TEMPLATE_DESCRIPTION = "SM-red5pro-server-12.3.0-nov01-m5large-template"
GROUP_NAME = "red5pro-sm-asg"
LAUNCH_CONFIGURATION = "SM-red5pro-server-12.3.0-nov01-m5large-LC"
LEGACY_GROUP_NAME = "red5pro-sm-legacy-asg"
PIPELINE = "stream-manager"
LEGACY_PIPELINE = "stream-manager-legacy"
INSTANCE_TYPE = "m5.large"
# The Amazon Linux 2 image of moto's built-in catalogue stands in for the host
# the Red5 Pro Stream Manager was installed on. Its root device is /dev/xvda
# with an 8 GiB snapshot, as on many Linux AMIs, so a client that assumes
# /dev/sda1 is caught.
BASE_IMAGE_NAME = "amzn2-ami-hvm-2.0.20180810-x86_64-gp2"
BASE_IMAGE_FALLBACK = "ami-04681a1dbd79675a5"
ROOT_DEVICE = "/dev/xvda"
RECORDINGS_DEVICE = "/dev/sdf"

# The guide's user data: give every Stream Manager behind the load balancer a
# unique streammanager.ip.
USER_DATA = """#!/bin/bash
uid=$(cat /dev/urandom | tr -dc 'a-zA-Z0-9' | fold -w 16 | head -n 1 | tr '[:upper:]' '[:lower:]')
smhost=$(echo "$uid.com")

sed -i "s/\\(streammanager\\.ip=\\).*\\$/\\1${smhost}/" /usr/local/red5pro/webapps/streammanager/WEB-INF/red5-web.properties
"""

ROOT_VOLUME = {
    "DeviceName": ROOT_DEVICE,
    "Ebs": {"VolumeSize": 16, "VolumeType": "gp3", "DeleteOnTermination": True},
}
# Production templates encrypt their volumes and keep recordings on a volume
# of their own.
TEMPLATE_VOLUMES = [
    {"DeviceName": ROOT_DEVICE,
     "Ebs": {"VolumeSize": 16, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}},
    {"DeviceName": RECORDINGS_DEVICE,
     "Ebs": {"VolumeSize": 50, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}},
]
TEAM_TAG = {"Key": "team", "Value": "streaming"}
# The Name tag the operator gave each pipeline's image.
IMAGE_NAME_TAGS = {PIPELINE: f"red5pro-sm-{VERSION}", LEGACY_PIPELINE: f"red5pro-sm-legacy-{VERSION}"}


class Seeder:
    def __init__(self, endpoint: str, timeout: float):
        import boto3

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
        session = boto3.session.Session(region_name=REGION)
        self.ec2 = session.client("ec2", endpoint_url=endpoint)
        self.iam = session.client("iam", endpoint_url=endpoint)
        self.elbv2 = session.client("elbv2", endpoint_url=endpoint)
        self.autoscaling = session.client("autoscaling", endpoint_url=endpoint)
        self.timeout = timeout
        self.summary: list[str] = []

    # -- waiting --------------------------------------------------------------

    def wait_for(self, what: str, check: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise SystemExit(f"seed: gave up waiting for {what} after {self.timeout:.0f}s")
            time.sleep(0.05)

    def instance_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def image_state(self, image_id: str) -> str:
        return self.ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"]

    # -- steps ------------------------------------------------------------------

    def existing_vpc(self) -> str | None:
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [VPC_NAME]}])["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def network(self) -> tuple[str, list[str], str, str]:
        vpc_id = self.ec2.create_vpc(
            CidrBlock="10.0.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": VPC_NAME}]}],
        )["Vpc"]["VpcId"]
        subnet_ids = []
        for name, cidr, zone in SUBNETS:
            subnet_ids.append(self.ec2.create_subnet(
                VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone,
                TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": name}]}],
            )["Subnet"]["SubnetId"])
            self.ec2.modify_subnet_attribute(SubnetId=subnet_ids[-1], MapPublicIpOnLaunch={"Value": True})
        sm_sg = self.ec2.create_security_group(
            GroupName=SM_SG, Description="Red5 Pro Stream Managers", VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": SM_SG}]}],
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=sm_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
             "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": label}]}
            for port, label in ((5080, "Stream Manager HTTP"), (443, "HTTPS"), (22, "SSH"))
        ])
        db_sg = self.ec2.create_security_group(
            GroupName=DB_SG, Description="Red5 Pro Stream Manager database", VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": DB_SG}]}],
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=db_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306,
             "UserIdGroupPairs": [{"GroupId": sm_sg, "Description": "MySQL from Stream Managers"}]}
        ])
        self.summary.append(f"vpc        {VPC_NAME} {vpc_id} subnets {', '.join(subnet_ids)}")
        self.summary.append(f"sg         {SM_SG} {sm_sg}, {DB_SG} {db_sg}")
        return vpc_id, subnet_ids, sm_sg, db_sg

    def identity(self) -> None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": "sts:AssumeRole"}],
        }
        self.iam.create_role(RoleName=BUILDER, AssumeRolePolicyDocument=json.dumps(trust),
                             Description="Red5 Pro Stream Manager image builder")
        self.iam.attach_role_policy(RoleName=BUILDER, PolicyArn=SSM_POLICY)
        self.iam.create_instance_profile(InstanceProfileName=BUILDER)
        self.iam.add_role_to_instance_profile(InstanceProfileName=BUILDER, RoleName=BUILDER)
        self.ec2.create_key_pair(KeyName=KEY_NAME)
        self.summary.append(f"iam        role + instance profile {BUILDER}; key pair {KEY_NAME}")

    def load_balancer(self, vpc_id: str, subnet_ids: list[str], sm_sg: str) -> str:
        alb = self.elbv2.create_load_balancer(
            Name=ALB_NAME, Subnets=subnet_ids, SecurityGroups=[sm_sg],
            Scheme="internet-facing", Type="application", IpAddressType="ipv4",
        )["LoadBalancers"][0]
        target_group = self.elbv2.create_target_group(
            Name=TG_NAME, Protocol="HTTP", Port=5080, VpcId=vpc_id, TargetType="instance",
            HealthCheckProtocol="HTTP", HealthCheckPath="/", HealthCheckPort="traffic-port",
        )["TargetGroups"][0]
        self.elbv2.create_listener(
            LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group["TargetGroupArn"]}],
        )
        self.summary.append(f"alb        {ALB_NAME} {alb['DNSName']} -> {TG_NAME} HTTP 5080, listener 80")
        return target_group["TargetGroupArn"]

    def base_image(self) -> str:
        images = self.ec2.describe_images(Filters=[{"Name": "name", "Values": [BASE_IMAGE_NAME]}])["Images"]
        return images[0]["ImageId"] if images else BASE_IMAGE_FALLBACK

    def bake(self, subnet_id: str, sm_sg: str) -> dict[str, str]:
        """Image a Stream Manager per pipeline, as step 1 of the guide does."""
        base = self.base_image()
        builders = {}
        for pipeline in (PIPELINE, LEGACY_PIPELINE):
            reservation = self.ec2.run_instances(
                ImageId=base, MinCount=1, MaxCount=1, InstanceType=INSTANCE_TYPE,
                KeyName=KEY_NAME, SubnetId=subnet_id, SecurityGroupIds=[sm_sg],
                IamInstanceProfile={"Name": BUILDER},
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "Name", "Value": f"red5pro-seed-{pipeline}"}]}],
            )
            builders[pipeline] = reservation["Instances"][0]["InstanceId"]
        for instance_id in builders.values():
            self.wait_for(f"{instance_id} running", lambda i=instance_id: self.instance_state(i) == "running")
        # The guide stops the instance first for the cleanest image.
        self.ec2.stop_instances(InstanceIds=list(builders.values()))
        for instance_id in builders.values():
            self.wait_for(f"{instance_id} stopped", lambda i=instance_id: self.instance_state(i) == "stopped")
        images = {}
        for pipeline, instance_id in builders.items():
            images[pipeline] = self.ec2.create_image(
                InstanceId=instance_id,
                Name=f"red5pro-{pipeline}-{VERSION}-seed",
                Description=f"Red5 Pro {VERSION} Stream Manager ({pipeline})",
                TagSpecifications=[{"ResourceType": "image", "Tags": [
                    {"Key": "Name", "Value": IMAGE_NAME_TAGS[pipeline]}]}],
            )["ImageId"]
        for image_id in images.values():
            state = self.wait_for(
                f"{image_id} available",
                lambda i=image_id: (s := self.image_state(i)) in ("available", "failed") and s,
            )
            if state != "available":
                raise SystemExit(f"seed: image {image_id} failed")
        self.ec2.terminate_instances(InstanceIds=list(builders.values()))
        for pipeline, image_id in images.items():
            self.summary.append(
                f"ami        {image_id} Name={IMAGE_NAME_TAGS[pipeline]} root {ROOT_DEVICE} 8 GiB"
            )
        return images

    def fleet(self, images: dict[str, str], subnet_ids: list[str], sm_sg: str, target_group: str) -> None:
        user_data = base64.b64encode(USER_DATA.encode("utf-8")).decode("ascii")
        template = self.ec2.create_launch_template(
            LaunchTemplateName=TEMPLATE_NAME,
            VersionDescription=TEMPLATE_DESCRIPTION,
            LaunchTemplateData={
                "ImageId": images[PIPELINE],
                "InstanceType": INSTANCE_TYPE,
                "SecurityGroupIds": [sm_sg],
                "KeyName": KEY_NAME,
                "IamInstanceProfile": {"Name": BUILDER},
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                    "HttpPutResponseHopLimit": 2},
                "Monitoring": {"Enabled": True},
                "BlockDeviceMappings": TEMPLATE_VOLUMES,
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": [TEAM_TAG]},
                    {"ResourceType": "volume", "Tags": [TEAM_TAG]},
                ],
                "UserData": user_data,
            },
        )["LaunchTemplate"]
        zones = ",".join(subnet_ids)
        # The console sets the group to the template's default version; the
        # guide recommends scale-in protection for Stream Managers with WebRTC.
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=GROUP_NAME,
            LaunchTemplate={"LaunchTemplateName": TEMPLATE_NAME, "Version": "$Default"},
            MinSize=1, MaxSize=4, DesiredCapacity=2, VPCZoneIdentifier=zones,
            TargetGroupARNs=[target_group], HealthCheckType="ELB", HealthCheckGracePeriod=300,
            NewInstancesProtectedFromScaleIn=True,
        )
        self.summary.append(
            f"template   {TEMPLATE_NAME} {template['LaunchTemplateId']} version 1 ({TEMPLATE_DESCRIPTION})"
        )
        self.summary.append(
            f"asg        {GROUP_NAME} template {TEMPLATE_NAME}:$Default min 1 max 4 desired 2, protected"
        )

        self.autoscaling.create_launch_configuration(
            LaunchConfigurationName=LAUNCH_CONFIGURATION,
            ImageId=images[LEGACY_PIPELINE],
            InstanceType=INSTANCE_TYPE,
            SecurityGroups=[sm_sg],
            KeyName=KEY_NAME,
            AssociatePublicIpAddress=True,
            BlockDeviceMappings=[ROOT_VOLUME],
            UserData=USER_DATA,
        )
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=LEGACY_GROUP_NAME,
            LaunchConfigurationName=LAUNCH_CONFIGURATION,
            MinSize=1, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=zones,
            TargetGroupARNs=[target_group], HealthCheckType="ELB", HealthCheckGracePeriod=300,
        )
        self.summary.append(f"lc         {LAUNCH_CONFIGURATION}")
        self.summary.append(f"asg        {LEGACY_GROUP_NAME} launch configuration, min 1 max 2 desired 1")

    def wait_for_groups(self) -> None:
        def all_running() -> list[str] | None:
            groups = self.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[GROUP_NAME, LEGACY_GROUP_NAME]
            )["AutoScalingGroups"]
            lines = []
            for group in groups:
                instances = group["Instances"]
                if len(instances) < group["DesiredCapacity"]:
                    return None
                if any(i["LifecycleState"] != "InService" for i in instances):
                    return None
                ids = [i["InstanceId"] for i in instances]
                lines.append(f"instances  {group['AutoScalingGroupName']}: {', '.join(ids)}")
            return lines

        self.summary.extend(self.wait_for("the groups' instances to run", all_running))

    def describe_existing(self) -> None:
        groups = self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[GROUP_NAME, LEGACY_GROUP_NAME]
        )["AutoScalingGroups"]
        self.summary.append(f"already seeded: vpc {VPC_NAME} exists; nothing was created")
        for group in groups:
            ids = [i["InstanceId"] for i in group["Instances"]]
            self.summary.append(f"asg        {group['AutoScalingGroupName']}: {', '.join(ids)}")

    def run(self) -> None:
        if self.existing_vpc():
            self.describe_existing()
            return
        vpc_id, subnet_ids, sm_sg, _ = self.network()
        self.identity()
        target_group = self.load_balancer(vpc_id, subnet_ids, sm_sg)
        images = self.bake(subnet_ids[0], sm_sg)
        self.fleet(images, subnet_ids, sm_sg, target_group)
        self.wait_for_groups()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="red5_emulator seed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="the emulator's URL")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="real seconds to wait for any one resource (default 600)")
    args = parser.parse_args(argv)
    seeder = Seeder(args.endpoint, args.timeout)
    seeder.run()
    sys.stdout.write("\n".join(seeder.summary) + "\n")
    return 0
