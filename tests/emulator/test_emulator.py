"""Tests of the local AWS emulator, through boto3 like any client.

One emulator process serves the whole module (started the way the Rust tests
start it: ``emulator start --foreground --port 0``); every test begins from
an empty account (``POST /moto-api/reset``) with the default delays and a
time scale small enough that an instance refresh takes well under a second.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = pathlib.Path(__file__).resolve().parent
EMULATOR = HERE / "emulator"
TIME_SCALE = 0.005
DEFAULT_DELAYS = {
    "instance_running": 20, "ssm_agent": 10, "ssm_command": 30, "image_available": 60,
    "instance_stop": 15, "ssm_invocation_visible": 2, "refresh_pending": 5,
    "time_scale": TIME_SCALE,
}
UBUNTU_AMI = "ami-785db401"
OTHER_AMI = "ami-760aaa0f"
TERMINAL = ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")


# -- the emulator process ----------------------------------------------------------

@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(EMULATOR), "start", "--foreground", "--port", "0", "--time-scale", str(TIME_SCALE)],
            stdout=subprocess.PIPE, stderr=log_file, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
        try:
            url = lines.get(timeout=120).strip()
        except queue.Empty:
            process.kill()
            raise AssertionError(f"the emulator printed no endpoint; log:\n{log.read_text()}")
        assert url.startswith("http://127.0.0.1:"), url
        yield url
        process.terminate()
        process.wait(timeout=10)


class Control:
    """The emulator's control API."""

    def __init__(self, url: str):
        self.url = url

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw.strip().startswith(b"{") else raw
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, body
        return body

    def post(self, path: str, body: Any) -> Any:
        status, answer = self.request("POST", path, body)
        assert status == 200, answer
        return answer

    def delete(self, path: str) -> Any:
        status, body = self.request("DELETE", path)
        assert status == 200, body
        return body

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events = self.get("/_emulator/events")["events"]
        return [e for e in events if kind is None or e["kind"] == kind]


class Aws:
    """boto3 clients for one test, without retries so faults stay visible."""

    def __init__(self, url: str):
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.ec2 = session.client("ec2", endpoint_url=url, config=config)
        self.autoscaling = session.client("autoscaling", endpoint_url=url, config=config)
        self.ssm = session.client("ssm", endpoint_url=url, config=config)
        self.iam = session.client("iam", endpoint_url=url, config=config)
        self.elbv2 = session.client("elbv2", endpoint_url=url, config=config)


@pytest.fixture
def control(endpoint: str) -> Control:
    control = Control(endpoint)
    status, _ = control.request("POST", "/moto-api/reset", {})
    assert status == 200
    control.post("/_emulator/delays", DEFAULT_DELAYS)
    return control


@pytest.fixture
def aws(endpoint: str, control: Control) -> Aws:
    return Aws(endpoint)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"].get("Message", "")


# -- builders ---------------------------------------------------------------------

def instance_state(aws: Aws, instance_id: str) -> str:
    reservation = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return reservation["Instances"][0]["State"]["Name"]


def builder_profile(aws: Aws) -> str:
    aws.iam.create_role(RoleName="builder", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    aws.iam.create_instance_profile(InstanceProfileName="builder")
    aws.iam.add_role_to_instance_profile(InstanceProfileName="builder", RoleName="builder")
    return "builder"


def launch(aws: Aws, profile: str | None = None) -> str:
    extra = {"IamInstanceProfile": {"Name": profile}} if profile else {}
    return aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1,
                                 InstanceType="m5.large", **extra)["Instances"][0]["InstanceId"]


def online_builder(aws: Aws) -> str:
    instance_id = launch(aws, builder_profile(aws))
    wait_until("the SSM agent", lambda: aws.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])["InstanceInformationList"])
    return instance_id


def subnets(aws: Aws) -> list[str]:
    vpc = aws.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return [
        aws.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24",
                              AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
        for n, zone in ((1, "a"), (2, "b"))
    ]


def template_group(aws: Aws, desired: int = 2) -> str:
    """A group on launch template version 1; version 2 exists with another AMI."""
    template_id = aws.ec2.create_launch_template(
        LaunchTemplateName="sm-template",
        LaunchTemplateData={"ImageId": UBUNTU_AMI, "InstanceType": "m5.large"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": OTHER_AMI, "InstanceType": "m5.large"}
    )
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="sm-group",
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "1"},
        MinSize=1, MaxSize=4, DesiredCapacity=desired, VPCZoneIdentifier=",".join(subnets(aws)),
    )
    wait_until("the group in service", lambda: all(
        i["LifecycleState"] == "InService" for i in group(aws)["Instances"]))
    return template_id


def group(aws: Aws, name: str = "sm-group") -> dict[str, Any]:
    return aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def versions_of_instances(aws: Aws, name: str = "sm-group") -> list[str]:
    instances = aws.autoscaling.describe_auto_scaling_instances()["AutoScalingInstances"]
    return sorted(i["LaunchTemplate"]["Version"] for i in instances if i["AutoScalingGroupName"] == name)


def latest_refresh(aws: Aws, name: str = "sm-group") -> dict[str, Any]:
    return aws.autoscaling.describe_instance_refreshes(AutoScalingGroupName=name)["InstanceRefreshes"][0]


def wait_for_refresh(aws: Aws, name: str = "sm-group") -> dict[str, Any]:
    return wait_until("the refresh to end", lambda: (
        r := latest_refresh(aws, name))["Status"] in TERMINAL and r)


def to_version(template_id: str, version: str = "2") -> dict[str, Any]:
    return {"LaunchTemplate": {"LaunchTemplateId": template_id, "Version": version}}


# -- EC2 ----------------------------------------------------------------------------

def test_instances_are_pending_before_running_and_stopping_before_stopped(aws: Aws, control: Control) -> None:
    instance_id = launch(aws)
    assert instance_state(aws, instance_id) == "pending"
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    assert [e["id"] for e in control.events("instance_running")] == [instance_id]

    stopping = aws.ec2.stop_instances(InstanceIds=[instance_id])["StoppingInstances"][0]
    assert stopping["CurrentState"]["Name"] == "stopping"
    assert instance_state(aws, instance_id) == "stopping"
    wait_until("stopped", lambda: instance_state(aws, instance_id) == "stopped")


def test_create_image_is_pending_then_available_and_refuses_a_duplicate_name(aws: Aws, control: Control) -> None:
    instance_id = launch(aws)
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    image_id = aws.ec2.create_image(
        InstanceId=instance_id, Name="red5pro-sm-12.4.0",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "red5-rollout:version", "Value": "12.4.0"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "red5-rollout:version", "Value": "12.4.0"}]},
        ],
    )["ImageId"]
    image = aws.ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["State"] == "pending"
    assert {"Key": "red5-rollout:version", "Value": "12.4.0"} in image["Tags"]
    code, status, _ = error_of(lambda: aws.ec2.create_image(InstanceId=instance_id, Name="red5pro-sm-12.4.0"))
    assert (code, status) == ("InvalidAMIName.Duplicate", 400)
    wait_until("available", lambda: aws.ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available")
    assert [e["id"] for e in control.events("image_available")] == [image_id]


def test_image_fail_fault_fails_the_next_image_with_its_reason(aws: Aws, control: Control) -> None:
    instance_id = launch(aws)
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    control.post("/_emulator/faults", {"image_fail_next": {"reason": "snapshot copy failed"}})
    failed = aws.ec2.create_image(InstanceId=instance_id, Name="image-one")["ImageId"]
    assert "image_fail_next" not in control.get("/_emulator/faults")["faults"]
    healthy = aws.ec2.create_image(InstanceId=instance_id, Name="image-two")["ImageId"]
    image = wait_until("failed", lambda: (
        i := aws.ec2.describe_images(ImageIds=[failed])["Images"][0])["State"] == "failed" and i)
    assert image["StateReason"]["Message"] == "snapshot copy failed"
    wait_until("available", lambda: aws.ec2.describe_images(ImageIds=[healthy])["Images"][0]["State"] == "available")


def test_images_mirror_the_instance_volumes_and_launches_refuse_a_volume_below_its_snapshot(aws: Aws) -> None:
    # OTHER_AMI is an Amazon Linux image: its root device is /dev/xvda.
    instance_id = aws.ec2.run_instances(ImageId=OTHER_AMI, MinCount=1, MaxCount=1, InstanceType="m5.large",
                                        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50}}],
                                        )["Instances"][0]["InstanceId"]
    described = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert described["RootDeviceName"] == "/dev/xvda"
    assert sorted(m["DeviceName"] for m in described["BlockDeviceMappings"]) == ["/dev/sdf", "/dev/xvda"]
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    image_id = aws.ec2.create_image(InstanceId=instance_id, Name="red5pro-sm-12.4.0")["ImageId"]
    image = aws.ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["RootDeviceName"] == "/dev/xvda"
    mappings = {m["DeviceName"]: m["Ebs"] for m in image["BlockDeviceMappings"]}
    assert (mappings["/dev/xvda"]["VolumeSize"], mappings["/dev/sdf"]["VolumeSize"]) == (8, 50)
    root_snapshot = mappings["/dev/xvda"]["SnapshotId"]
    assert aws.ec2.describe_snapshots(SnapshotIds=[root_snapshot])["Snapshots"][0]["VolumeSize"] == 8

    def run(device: str, size: int) -> Any:
        return aws.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="m5.large",
                                     BlockDeviceMappings=[{"DeviceName": device, "Ebs": {"VolumeSize": size}}])

    code, status, message = error_of(lambda: run("/dev/xvda", 4))
    assert (code, status) == ("InvalidBlockDeviceMapping", 400)
    assert message == f"Volume of size 4GB is smaller than snapshot '{root_snapshot}', expect size >= 8GB"
    assert error_of(lambda: run("/dev/sdf", 20))[0] == "InvalidBlockDeviceMapping"
    bigger = run("/dev/xvda", 16)["Instances"][0]
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in bigger["BlockDeviceMappings"]}
    sizes = {v["VolumeId"]: v["Size"] for v in aws.ec2.describe_volumes(VolumeIds=list(volumes.values()))["Volumes"]}
    assert {d: sizes[v] for d, v in volumes.items()} == {"/dev/xvda": 16, "/dev/sdf": 50}

    # RegisterImage takes the root device and its snapshot as given.
    volume = aws.ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    snapshot = aws.ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    registered = aws.ec2.register_image(
        Name="registered", RootDeviceName="/dev/xvda", Architecture="x86_64", VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot, "VolumeSize": 8}}],
    )["ImageId"]
    image = aws.ec2.describe_images(ImageIds=[registered])["Images"][0]
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot
    code, _, _ = error_of(lambda: aws.ec2.register_image(
        Name="too-small", RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot, "VolumeSize": 4}}]))
    assert code == "InvalidBlockDeviceMapping"


def test_run_instances_client_token_is_idempotent(aws: Aws) -> None:
    def run(token: str, instance_type: str = "m5.large") -> Any:
        return aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType=instance_type,
                                     ClientToken=token,
                                     TagSpecifications=[{"ResourceType": "instance",
                                                         "Tags": [{"Key": "Name", "Value": "builder"}]}])

    first = run("builder-run-1")
    again = run("builder-run-1")
    assert again["ReservationId"] == first["ReservationId"]
    assert again["Instances"][0]["InstanceId"] == first["Instances"][0]["InstanceId"]
    instances = [i for r in aws.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(instances) == 1
    code, status, _ = error_of(lambda: run("builder-run-1", "m5.xlarge"))
    assert (code, status) == ("IdempotentParameterMismatch", 400)
    code, status, _ = error_of(lambda: run("x" * 65))
    assert (code, status) == ("InvalidParameterValue", 400)
    assert run("x" * 64)["Instances"][0]["InstanceId"] != first["Instances"][0]["InstanceId"]

    # AWS's client-token filter finds the instance a token launched, and only that one.
    def by_token(token: str) -> list[str]:
        found = aws.ec2.describe_instances(Filters=[{"Name": "client-token", "Values": [token]}])
        return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]

    assert by_token("builder-run-1") == [first["Instances"][0]["InstanceId"]]
    assert by_token("never-used") == []


def test_invisible_switch_hides_new_instances_images_and_versions_from_describe_calls(
        aws: Aws, control: Control) -> None:
    builder = launch(aws)
    template_id = aws.ec2.create_launch_template(
        LaunchTemplateName="sm", LaunchTemplateData={"ImageId": UBUNTU_AMI})["LaunchTemplate"]["LaunchTemplateId"]
    wait_until("running", lambda: instance_state(aws, builder) == "running")
    # 200 emulated seconds: one second at the tests' time scale.
    control.post("/_emulator/faults", {"invisible_for_seconds": 200})
    started = time.monotonic()
    instance_id = launch(aws)
    image_id = aws.ec2.create_image(InstanceId=builder, Name="unseen")["ImageId"]
    aws.ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": OTHER_AMI})
    copy_id = aws.ec2.copy_image(SourceRegion="us-east-1", SourceImageId=OTHER_AMI, Name="unseen-copy")["ImageId"]

    assert error_of(lambda: aws.ec2.describe_instances(InstanceIds=[instance_id]))[:2] == (
        "InvalidInstanceID.NotFound", 400)
    assert error_of(lambda: aws.ec2.describe_images(ImageIds=[copy_id]))[0] == "InvalidAMIID.NotFound"
    listed = [i["InstanceId"] for r in aws.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert listed == [builder]
    assert error_of(lambda: aws.ec2.describe_images(ImageIds=[image_id]))[0] == "InvalidAMIID.NotFound"
    assert aws.ec2.describe_images(Owners=["self"])["Images"] == []
    assert error_of(lambda: aws.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["2"]))[0] == "InvalidLaunchTemplateId.VersionNotFound"
    latest = aws.ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["$Latest"])
    assert [v["VersionNumber"] for v in latest["LaunchTemplateVersions"]] == [1]
    # Mutations see them at once.
    aws.ec2.create_tags(Resources=[instance_id, image_id], Tags=[{"Key": "team", "Value": "streaming"}])
    # The switch stays armed: later creations are hidden too.
    assert control.get("/_emulator/faults")["faults"] == {"invisible_for_seconds": 200}

    wait_until("visible", lambda: aws.ec2.describe_instances(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}])["Reservations"], timeout=5)
    assert time.monotonic() - started >= 0.9
    aws.ec2.describe_images(ImageIds=[image_id])
    # The copy was made last: it shows a moment later.
    wait_until("the copy visible", lambda: aws.ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "image-id", "Values": [copy_id]}])["Images"], timeout=5)
    versions = aws.ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in versions) == [1, 2]
    aws.ec2.terminate_instances(InstanceIds=[instance_id])


def test_launch_template_version_keeps_only_the_fields_given_unless_a_source_version(aws: Aws) -> None:
    profile = builder_profile(aws)
    user_data = base64.b64encode(b"#!/bin/bash\necho red5pro\n").decode()
    data = {
        "ImageId": UBUNTU_AMI, "InstanceType": "m5.large", "UserData": user_data,
        "IamInstanceProfile": {"Name": profile},
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "Monitoring": {"Enabled": True},
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16, "VolumeType": "gp3", "Encrypted": True}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50, "VolumeType": "gp3"}},
        ],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "streaming"}]}],
    }
    template_id = aws.ec2.create_launch_template(
        LaunchTemplateName="sm", LaunchTemplateData=data,
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "owner", "Value": "ops"}]}],
    )["LaunchTemplate"]["LaunchTemplateId"]

    def version(number: str) -> dict[str, Any]:
        return aws.ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[number])["LaunchTemplateVersions"][0]["LaunchTemplateData"]

    assert version("1")["TagSpecifications"] == data["TagSpecifications"]
    bare = aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": OTHER_AMI})["LaunchTemplateVersion"]
    assert bare["VersionNumber"] == 2 and bare["LaunchTemplateData"] == {"ImageId": OTHER_AMI}
    assert version("2") == {"ImageId": OTHER_AMI}

    for source in ("1", "$Default"):
        aws.ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion=source,
            LaunchTemplateData={"ImageId": OTHER_AMI, "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}]})
    for number in ("3", "4"):
        merged = version(number)
        assert merged["ImageId"] == OTHER_AMI
        assert merged["IamInstanceProfile"] == {"Name": profile}
        assert merged["MetadataOptions"]["HttpTokens"] == "required"
        assert merged["Monitoring"] == {"Enabled": True}
        assert merged["UserData"] == user_data
        assert merged["TagSpecifications"] == data["TagSpecifications"]
        assert [m["DeviceName"] for m in merged["BlockDeviceMappings"]] == ["/dev/xvda"]
    aws.ec2.create_launch_template_version(LaunchTemplateId=template_id, SourceVersion="$Latest",
                                           LaunchTemplateData={"InstanceType": "m5.xlarge"})
    assert version("5")["ImageId"] == OTHER_AMI and version("5")["InstanceType"] == "m5.xlarge"
    code, _, _ = error_of(lambda: aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="9", LaunchTemplateData={}))
    assert code == "InvalidLaunchTemplateId.VersionNotFound"

    # Groups launch from a merged version, with what it inherited.
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="sm-group", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "4"},
        MinSize=1, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=",".join(subnets(aws)))
    [state] = group(aws)["Instances"]
    assert state["LaunchTemplate"]["Version"] == "4"
    instance = aws.ec2.describe_instances(InstanceIds=[state["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == OTHER_AMI
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["Monitoring"]["State"] == "enabled"
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{profile}")
    assert {"Key": "team", "Value": "streaming"} in instance["Tags"]
    attribute = aws.ec2.describe_instance_attribute(InstanceId=state["InstanceId"], Attribute="userData")
    assert base64.b64decode(attribute["UserData"]["Value"]) == b"#!/bin/bash\necho red5pro\n"


# -- SSM ------------------------------------------------------------------------------

def test_describe_instance_information_lists_agents_once_online(aws: Aws, control: Control) -> None:
    profile = builder_profile(aws)
    with_profile = launch(aws, profile)
    without_profile = launch(aws)
    assert aws.ssm.describe_instance_information()["InstanceInformationList"] == []
    wait_until("online", lambda: aws.ssm.describe_instance_information()["InstanceInformationList"])
    listed = aws.ssm.describe_instance_information()["InstanceInformationList"]
    assert [(i["InstanceId"], i["PingStatus"]) for i in listed] == [(with_profile, "Online")]
    running = [e for e in control.events() if e["id"] == with_profile]
    assert [e["kind"] for e in running] == ["instance_running", "ssm_agent_online"]

    by_filter = aws.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [with_profile, without_profile]}])
    assert [i["InstanceId"] for i in by_filter["InstanceInformationList"]] == [with_profile]
    by_list = aws.ssm.describe_instance_information(
        InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": [without_profile]}])
    assert by_list["InstanceInformationList"] == []

    aws.ec2.stop_instances(InstanceIds=[with_profile])
    info = aws.ssm.describe_instance_information()["InstanceInformationList"]
    assert [i["PingStatus"] for i in info] == ["ConnectionLost"]


def test_send_command_runs_on_the_named_instance_only_and_takes_time(aws: Aws, control: Control) -> None:
    # One real second, so InProgress is seen even when a call is slow (the
    # first error a fresh client parses can take a fifth of a second).
    control.post("/_emulator/delays", {"ssm_command": 200})
    builder = online_builder(aws)
    bystander = launch(aws, "builder")
    wait_until("bystander online", lambda: len(
        aws.ssm.describe_instance_information()["InstanceInformationList"]) == 2)
    command = aws.ssm.send_command(
        InstanceIds=[builder], DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["set -euo pipefail", "apt-get install -y red5pro\nsystemctl restart red5pro"]},
    )["Command"]
    assert command["InstanceIds"] == [builder]
    command_id = command["CommandId"]
    code, _, _ = error_of(lambda: aws.ssm.get_command_invocation(CommandId=command_id, InstanceId=bystander))
    assert code == "InvocationDoesNotExist"

    statuses = []

    def finished() -> dict[str, Any] | None:
        try:
            invocation = aws.ssm.get_command_invocation(CommandId=command_id, InstanceId=builder)
        except ClientError as error:
            statuses.append(error.response["Error"]["Code"])
            return None
        statuses.append(invocation["Status"])
        return invocation if invocation["Status"] not in ("Pending", "InProgress") else None

    invocation = wait_until("the command", finished)
    assert "InProgress" in statuses
    assert invocation["Status"] == "Success" and invocation["ResponseCode"] == 0
    assert "running 3 script lines" in invocation["StandardOutputContent"]
    assert "+ systemctl restart red5pro" in invocation["StandardOutputContent"]
    assert [e["id"] for e in control.events("command_finished")] == [command_id]


def test_send_command_refuses_an_instance_without_an_online_agent(aws: Aws) -> None:
    instance_id = launch(aws)
    code, status, _ = error_of(lambda: aws.ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}))
    assert (code, status) == ("InvalidInstanceId", 400)


def test_ssm_fail_fault_fails_the_next_command_with_its_output(aws: Aws, control: Control) -> None:
    builder = online_builder(aws)
    control.post("/_emulator/faults", {"ssm_fail_next": {"output": "E: Unable to locate package red5pro\n", "exit_code": 3}})

    def run(commands: list[str]) -> dict[str, Any]:
        command_id = aws.ssm.send_command(InstanceIds=[builder], DocumentName="AWS-RunShellScript",
                                          Parameters={"commands": commands})["Command"]["CommandId"]

        def done() -> dict[str, Any] | None:
            try:
                invocation = aws.ssm.get_command_invocation(CommandId=command_id, InstanceId=builder)
            except ClientError:
                return None
            return invocation if invocation["Status"] not in ("Pending", "InProgress") else None

        return wait_until("the command", done)

    failed = run(["apt-get install -y red5pro"])
    assert failed["Status"] == "Failed"
    assert failed["ResponseCode"] == 3
    assert failed["StandardOutputContent"] == "E: Unable to locate package red5pro\n"
    assert failed["StandardErrorContent"] == "failed to run commands: exit status 3"
    # The switch is one-shot, and long output is cut like AWS cuts it.
    long_script = [f"echo line {n} {'x' * 40}" for n in range(1000)]
    succeeded = run(long_script)
    assert succeeded["Status"] == "Success"
    assert len(succeeded["StandardOutputContent"]) == 24_000


def test_list_commands_and_invocations_find_a_command_sent_earlier(aws: Aws, control: Control) -> None:
    builder = online_builder(aws)
    first = aws.ssm.send_command(InstanceIds=[builder], DocumentName="AWS-RunShellScript",
                                 Comment="red5-rollout run-1 update", Parameters={"commands": ["echo one"]},
                                 )["Command"]["CommandId"]
    listed = aws.ssm.list_commands(InstanceId=builder)["Commands"]
    assert [(c["CommandId"], c["Status"], c["Comment"]) for c in listed] == [
        (first, "InProgress", "red5-rollout run-1 update")]
    assert listed[0]["DocumentName"] == "AWS-RunShellScript" and "RequestedDateTime" in listed[0]
    wait_until("the command", lambda: aws.ssm.list_commands(CommandId=first)["Commands"][0]["Status"] == "Success")
    second = aws.ssm.send_command(InstanceIds=[builder], DocumentName="AWS-RunShellScript",
                                  Comment="red5-rollout run-2 update", Parameters={"commands": ["echo two"]},
                                  )["Command"]["CommandId"]
    assert [c["CommandId"] for c in aws.ssm.list_commands(InstanceId=builder)["Commands"]] == [second, first]
    in_progress = aws.ssm.list_commands(InstanceId=builder, Filters=[{"key": "Status", "value": "InProgress"}])
    assert [c["CommandId"] for c in in_progress["Commands"]] == [second]
    assert aws.ssm.list_commands(InstanceId="i-0123456789abcdef0")["Commands"] == []
    assert error_of(lambda: aws.ssm.list_commands(CommandId="00000000-0000-0000-0000-000000000000"))[0] == (
        "InvalidCommandId")

    invocations = aws.ssm.list_command_invocations(CommandId=first, Details=True)["CommandInvocations"]
    [invocation] = invocations
    assert (invocation["InstanceId"], invocation["Status"], invocation["Comment"]) == (
        builder, "Success", "red5-rollout run-1 update")
    assert "running 1 script lines" in invocation["CommandPlugins"][0]["Output"]
    assert invocation["CommandPlugins"][0]["ResponseCode"] == 0
    # Like GetCommandInvocation, a fresh command's invocations show up after a moment.
    brief = wait_until("both invocations", lambda: len(
        b := aws.ssm.list_command_invocations(InstanceId=builder)["CommandInvocations"]) == 2 and b)
    assert [i["CommandId"] for i in brief] == [second, first]
    assert all(i["CommandPlugins"] == [] for i in brief)


def test_get_parameters_takes_at_most_ten_names(aws: Aws) -> None:
    aws.ssm.put_parameter(Name="/red5/sm/version", Value="12.3.0", Type="String")
    names = ["/red5/sm/version"] + [f"/red5/sm/missing-{n}" for n in range(9)]
    answer = aws.ssm.get_parameters(Names=names)
    assert [p["Value"] for p in answer["Parameters"]] == ["12.3.0"]
    assert sorted(answer["InvalidParameters"]) == sorted(names[1:])
    # AWS: "Array Members: Minimum number of 1 item. Maximum number of 10 items."
    code, status, message = error_of(lambda: aws.ssm.get_parameters(Names=names + ["/red5/sm/eleventh"]))
    assert (code, status) == ("ValidationException", 400)
    assert "at 'names' failed to satisfy constraint: Member must have length less than or equal to 10" in message


# -- Auto Scaling ---------------------------------------------------------------------

def test_refresh_replaces_instances_and_moves_the_group_to_the_new_version(aws: Aws, control: Control) -> None:
    template_id = template_group(aws)
    before = {i["InstanceId"] for i in group(aws)["Instances"]}
    refresh_id = aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 20, "AutoRollback": True},
    )["InstanceRefreshId"]
    code, status, _ = error_of(lambda: aws.autoscaling.start_instance_refresh(AutoScalingGroupName="sm-group"))
    assert (code, status) == ("InstanceRefreshInProgress", 400)
    # Pending for a few seconds, then InProgress: a loaded machine may already see the latter.
    assert latest_refresh(aws)["Status"] in ("Pending", "InProgress")

    seen_percentages = set()

    def done() -> dict[str, Any] | None:
        refresh = latest_refresh(aws)
        seen_percentages.add(refresh["PercentageComplete"])
        return refresh if refresh["Status"] in TERMINAL else None

    refresh = wait_until("the refresh", done)
    assert refresh["InstanceRefreshId"] == refresh_id
    assert refresh["Status"] == "Successful"
    assert {0, 50, 100} <= seen_percentages
    assert refresh["InstancesToUpdate"] == 0 and "EndTime" in refresh
    assert refresh["Preferences"]["MinHealthyPercentage"] == 50
    assert refresh["Preferences"]["AutoRollback"] is True
    assert refresh["DesiredConfiguration"]["LaunchTemplate"]["Version"] == "2"
    assert group(aws)["LaunchTemplate"]["Version"] == "2"
    after = {i["InstanceId"] for i in group(aws)["Instances"]}
    assert len(after) == 2 and not (after & before)
    assert versions_of_instances(aws) == ["2", "2"]
    assert {i["LaunchTemplate"]["Version"] for i in group(aws)["Instances"]} == {"2"}
    assert [e["id"] for e in control.events("refresh_terminal")] == [refresh_id]


def test_refresh_failing_at_half_rolls_back_with_auto_rollback(aws: Aws, control: Control) -> None:
    template_id = template_group(aws)
    control.post("/_emulator/faults", {"refresh_fail_at_percent": 50})
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 10, "AutoRollback": True},
    )
    statuses = []

    def done() -> dict[str, Any] | None:
        refresh = latest_refresh(aws)
        statuses.append(refresh["Status"])
        return refresh if refresh["Status"] in TERMINAL else None

    refresh = wait_until("the rollback", done)
    assert refresh["Status"] == "RollbackSuccessful"
    assert "RollbackInProgress" in statuses
    assert refresh["RollbackDetails"]["PercentageCompleteOnRollback"] == 50
    assert "50%" in refresh["RollbackDetails"]["RollbackReason"]
    assert group(aws)["LaunchTemplate"]["Version"] == "1"
    assert versions_of_instances(aws) == ["1", "1"]
    assert "refresh_fail_at_percent" not in control.get("/_emulator/faults")["faults"]


def test_refresh_failing_without_auto_rollback_ends_failed(aws: Aws, control: Control) -> None:
    template_id = template_group(aws)
    control.post("/_emulator/faults", {"refresh_fail_at_percent": 50})
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 10},
    )
    refresh = wait_for_refresh(aws)
    assert refresh["Status"] == "Failed"
    assert refresh["PercentageComplete"] == 50
    assert "50%" in refresh["StatusReason"]
    assert group(aws)["LaunchTemplate"]["Version"] == "1"
    assert versions_of_instances(aws) == ["1", "2"]


def test_cancel_stops_the_refresh_and_keeps_replaced_instances(aws: Aws) -> None:
    template_id = template_group(aws)
    code, _, _ = error_of(lambda: aws.autoscaling.cancel_instance_refresh(AutoScalingGroupName="sm-group"))
    assert code == "ActiveInstanceRefreshNotFound"
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 60},
    )
    wait_until("a batch in flight", lambda: latest_refresh(aws)["Status"] == "InProgress")
    aws.autoscaling.cancel_instance_refresh(AutoScalingGroupName="sm-group")
    assert latest_refresh(aws)["Status"] == "Cancelling"
    refresh = wait_for_refresh(aws)
    assert refresh["Status"] == "Cancelled"
    assert group(aws)["LaunchTemplate"]["Version"] == "1"
    assert versions_of_instances(aws) == ["1", "2"]


def test_rollback_replaces_new_instances_with_the_previous_version(aws: Aws) -> None:
    template_id = template_group(aws)
    code, _, _ = error_of(lambda: aws.autoscaling.rollback_instance_refresh(AutoScalingGroupName="sm-group"))
    assert code == "ActiveInstanceRefreshNotFound"
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 60},
    )
    wait_until("the first batch", lambda: latest_refresh(aws)["PercentageComplete"] == 50)
    aws.autoscaling.rollback_instance_refresh(AutoScalingGroupName="sm-group")
    assert latest_refresh(aws)["Status"] == "RollbackInProgress"
    refresh = wait_for_refresh(aws)
    assert refresh["Status"] == "RollbackSuccessful"
    assert refresh["RollbackDetails"]["PercentageCompleteOnRollback"] == 50
    assert group(aws)["LaunchTemplate"]["Version"] == "1"
    assert versions_of_instances(aws) == ["1", "1"]


def test_refresh_preferences_are_validated_like_aws(aws: Aws) -> None:
    template_id = template_group(aws, desired=1)
    refused = [
        ({"Preferences": {"AutoRollback": True}}, "ValidationError"),
        ({"Preferences": {"AutoRollback": True}, "DesiredConfiguration": to_version(template_id, "$Latest")},
         "ValidationError"),
        ({"Preferences": {"MinHealthyPercentage": 50, "MaxHealthyPercentage": 250}}, "ValidationError"),
        ({"Preferences": {"MinHealthyPercentage": 50, "MaxHealthyPercentage": 160}}, "ValidationError"),
        ({"Preferences": {"MaxHealthyPercentage": 150}}, "ValidationError"),
        ({"DesiredConfiguration": to_version(template_id, "9")}, "ValidationError"),
    ]
    for arguments, expected in refused:
        code, status, _ = error_of(lambda: aws.autoscaling.start_instance_refresh(
            AutoScalingGroupName="sm-group", **arguments))
        assert (code, status) == (expected, 400), arguments
    assert aws.autoscaling.describe_instance_refreshes(AutoScalingGroupName="sm-group")["InstanceRefreshes"] == []
    # Without AutoRollback, $Latest is fine, and it rolls back only by hand.
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id, "$Latest"))
    code, _, _ = error_of(lambda: aws.autoscaling.rollback_instance_refresh(AutoScalingGroupName="sm-group"))
    assert code == "IrreversibleInstanceRefresh"


def test_max_healthy_above_100_launches_before_terminating(aws: Aws) -> None:
    template_id = template_group(aws, desired=1)
    aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", DesiredConfiguration=to_version(template_id),
        Preferences={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200, "InstanceWarmup": 40},
    )
    sizes = set()

    def done() -> bool:
        sizes.add(len(group(aws)["Instances"]))
        return latest_refresh(aws)["Status"] in TERMINAL

    wait_until("the refresh", done)
    assert latest_refresh(aws)["Status"] == "Successful"
    assert sizes == {1, 2}
    assert versions_of_instances(aws) == ["2"]


def test_launch_configuration_groups_refresh_to_the_group_configuration(aws: Aws, control: Control) -> None:
    def configuration(name: str, image: str) -> None:
        aws.autoscaling.create_launch_configuration(
            LaunchConfigurationName=name, ImageId=image, InstanceType="m5.large")

    configuration("SM-12.3.0-LC", UBUNTU_AMI)
    code, status, _ = error_of(lambda: configuration("SM-12.3.0-LC", OTHER_AMI))
    assert (code, status) == ("AlreadyExists", 400)
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="legacy", LaunchConfigurationName="SM-12.3.0-LC",
        MinSize=1, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=",".join(subnets(aws)))
    code, status, _ = error_of(lambda: aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="legacy", LaunchConfigurationName="no-such-LC"))
    assert (code, status) == ("ValidationError", 400)

    configuration("SM-12.4.0-LC", OTHER_AMI)
    aws.autoscaling.update_auto_scaling_group(AutoScalingGroupName="legacy", LaunchConfigurationName="SM-12.4.0-LC")
    [old] = aws.autoscaling.describe_auto_scaling_instances()["AutoScalingInstances"]
    assert old["LaunchConfigurationName"] == "SM-12.3.0-LC"
    # AWS cannot skip matching against a launch configuration.
    code, status, _ = error_of(lambda: aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="legacy", Preferences={"InstanceWarmup": 10, "SkipMatching": True}))
    assert (code, status) == ("ValidationError", 400)
    refresh_id = aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="legacy", Preferences={"InstanceWarmup": 10},
    )["InstanceRefreshId"]
    # Nobody polls meanwhile: the refresh must finish on the emulator's clock.
    time.sleep(1.0)
    [finished] = control.events("refresh_terminal")
    assert finished["id"] == refresh_id and finished["status"] == "Successful"
    assert finished["time"] < time.time() - 0.3
    assert wait_for_refresh(aws, "legacy")["Status"] == "Successful"
    [new] = aws.autoscaling.describe_auto_scaling_instances()["AutoScalingInstances"]
    assert new["LaunchConfigurationName"] == "SM-12.4.0-LC"
    assert new["InstanceId"] != old["InstanceId"]
    reservation = aws.ec2.describe_instances(InstanceIds=[new["InstanceId"]])["Reservations"][0]
    assert reservation["Instances"][0]["ImageId"] == OTHER_AMI


def test_describe_auto_scaling_groups_takes_at_most_fifty_names(aws: Aws) -> None:
    aws.autoscaling.create_launch_configuration(
        LaunchConfigurationName="SM-12.3.0-LC", ImageId=UBUNTU_AMI, InstanceType="m5.large")
    for name in ("sm-group", "sm-legacy"):
        aws.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchConfigurationName="SM-12.3.0-LC",
            MinSize=0, MaxSize=1, DesiredCapacity=0, VPCZoneIdentifier=",".join(subnets(aws)))
    names = ["sm-group", "sm-legacy"] + [f"missing-{n}" for n in range(48)]
    answer = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=names)
    assert sorted(g["AutoScalingGroupName"] for g in answer["AutoScalingGroups"]) == ["sm-group", "sm-legacy"]
    code, status, message = error_of(lambda: aws.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=names + ["missing-50"]))
    assert (code, status, message) == (
        "ValidationError", 400, "The number of group names that may be passed in is limited to 50")
    # "You can optionally increase this limit using the MaxRecords property" (at most 100).
    many = names + [f"more-{n}" for n in range(50)]
    answer = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=many, MaxRecords=100)
    assert len(answer["AutoScalingGroups"]) == 2
    code, status, message = error_of(lambda: aws.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=many + ["more-50"], MaxRecords=100))
    assert (code, status, message) == (
        "ValidationError", 400, "The number of group names that may be passed in is limited to 100")


# -- deleting what a fleet no longer needs ---------------------------------------------

def test_a_launch_configuration_a_group_uses_cannot_be_deleted(aws: Aws) -> None:
    for name in ("SM-12.3.0-LC", "SM-12.4.0-LC"):
        aws.autoscaling.create_launch_configuration(
            LaunchConfigurationName=name, ImageId=UBUNTU_AMI, InstanceType="m5.large")
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="legacy", LaunchConfigurationName="SM-12.3.0-LC",
        MinSize=0, MaxSize=1, DesiredCapacity=0, VPCZoneIdentifier=",".join(subnets(aws)))
    code, status, message = error_of(lambda: aws.autoscaling.delete_launch_configuration(
        LaunchConfigurationName="SM-12.3.0-LC"))
    assert (code, status) == ("ResourceInUse", 400)
    assert "SM-12.3.0-LC" in message and "legacy" in message
    aws.autoscaling.delete_launch_configuration(LaunchConfigurationName="SM-12.4.0-LC")
    names = [c["LaunchConfigurationName"]
             for c in aws.autoscaling.describe_launch_configurations()["LaunchConfigurations"]]
    assert names == ["SM-12.3.0-LC"]
    # Once the group moved on, the old one can go.
    aws.autoscaling.create_launch_configuration(
        LaunchConfigurationName="SM-12.5.0-LC", ImageId=OTHER_AMI, InstanceType="m5.large")
    aws.autoscaling.update_auto_scaling_group(AutoScalingGroupName="legacy", LaunchConfigurationName="SM-12.5.0-LC")
    aws.autoscaling.delete_launch_configuration(LaunchConfigurationName="SM-12.3.0-LC")


def test_template_versions_are_deleted_but_never_the_default_one(aws: Aws) -> None:
    template_id = aws.ec2.create_launch_template(
        LaunchTemplateName="sm-template", LaunchTemplateData={"ImageId": UBUNTU_AMI, "InstanceType": "m5.large"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    for _ in range(3):
        aws.ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion="1", LaunchTemplateData={"ImageId": OTHER_AMI})
    answer = aws.ec2.delete_launch_template_versions(LaunchTemplateName="sm-template", Versions=["1", "2", "4", "9"])
    assert [v["VersionNumber"] for v in answer["SuccessfullyDeletedLaunchTemplateVersions"]] == [2, 4]
    refused = {v["VersionNumber"]: v["ResponseError"] for v in answer["UnsuccessfullyDeletedLaunchTemplateVersions"]}
    assert refused[1] == {"Code": "unexpectedError",
                          "Message": "Cannot delete the default version of a launch template."}
    assert refused[9]["Code"] == "launchTemplateVersionDoesNotExist"
    listed = aws.ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in listed) == [1, 3]
    code, _, _ = error_of(lambda: aws.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["2"]))
    assert code == "InvalidLaunchTemplateId.VersionNotFound"
    # $Latest is the newest version left, and a new version never reuses a number.
    [latest] = aws.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["$Latest"])["LaunchTemplateVersions"]
    assert latest["VersionNumber"] == 3
    [template] = aws.ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"]
    assert (template["DefaultVersionNumber"], template["LatestVersionNumber"]) == (1, 3)
    created = aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="3", LaunchTemplateData={})["LaunchTemplateVersion"]
    assert created["VersionNumber"] == 5
    code, _, _ = error_of(lambda: aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="2", LaunchTemplateData={}))
    assert code == "InvalidLaunchTemplateId.VersionNotFound"


def test_a_snapshot_a_registered_image_uses_cannot_be_deleted(aws: Aws) -> None:
    instance_id = aws.ec2.run_instances(ImageId=OTHER_AMI, MinCount=1, MaxCount=1,
                                        InstanceType="m5.large")["Instances"][0]["InstanceId"]
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    baked = aws.ec2.create_image(InstanceId=instance_id, Name="red5pro-sm-12.4.0")["ImageId"]
    [mapping] = aws.ec2.describe_images(ImageIds=[baked])["Images"][0]["BlockDeviceMappings"]
    baked_snapshot = mapping["Ebs"]["SnapshotId"]
    volume = aws.ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    snapshot = aws.ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    registered = aws.ec2.register_image(
        Name="registered", RootDeviceName="/dev/xvda", Architecture="x86_64", VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot, "VolumeSize": 8}}],
    )["ImageId"]
    for image, used in ((baked, baked_snapshot), (registered, snapshot)):
        code, status, message = error_of(lambda: aws.ec2.delete_snapshot(SnapshotId=used))
        assert (code, status) == ("InvalidSnapshot.InUse", 400)
        assert message == f"The snapshot {used} is currently in use by {image}"
        aws.ec2.deregister_image(ImageId=image)
        aws.ec2.delete_snapshot(SnapshotId=used)
    assert error_of(lambda: aws.ec2.delete_snapshot(SnapshotId=snapshot))[0] == "InvalidSnapshot.NotFound"


def set_up_group(aws: Aws, version: str = "1", desired: int = 2, protected: bool = False,
                 second: dict[str, Any] | None = None) -> str:
    """Group "sm-group" on template "sm-template" (v1 UBUNTU_AMI, v2 OTHER_AMI or ``second``)."""
    template_id = aws.ec2.create_launch_template(
        LaunchTemplateName="sm-template",
        LaunchTemplateData={"ImageId": UBUNTU_AMI, "InstanceType": "m5.large"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, LaunchTemplateData=second or {"ImageId": OTHER_AMI, "InstanceType": "m5.large"})
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="sm-group",
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": version},
        MinSize=1, MaxSize=6, DesiredCapacity=desired, VPCZoneIdentifier=",".join(subnets(aws)),
        NewInstancesProtectedFromScaleIn=protected,
    )
    wait_until("the group in service", lambda: all(
        i["LifecycleState"] == "InService" for i in group(aws)["Instances"]))
    return template_id


def refresh(aws: Aws, template_id: str | None, version: str = "2", **preferences: Any) -> str:
    extra = {"DesiredConfiguration": to_version(template_id, version)} if template_id else {}
    preferences.setdefault("MinHealthyPercentage", 50)
    preferences.setdefault("InstanceWarmup", 10)
    return aws.autoscaling.start_instance_refresh(
        AutoScalingGroupName="sm-group", Preferences=preferences, **extra)["InstanceRefreshId"]


def test_group_on_latest_or_default_launches_that_version_and_cannot_roll_back(aws: Aws, control: Control) -> None:
    template_id = set_up_group(aws, version="$Latest")
    assert group(aws)["LaunchTemplate"]["Version"] == "$Latest"
    assert versions_of_instances(aws) == ["2", "2"]
    aws.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="1", LaunchTemplateData={"InstanceType": "m5.xlarge"})
    aws.autoscaling.set_desired_capacity(AutoScalingGroupName="sm-group", DesiredCapacity=3)
    assert versions_of_instances(aws) == ["2", "2", "3"]
    replaced = group(aws)["Instances"][0]["InstanceId"]
    aws.ec2.terminate_instances(InstanceIds=[replaced])
    assert versions_of_instances(aws) == ["2", "3", "3"]
    assert group(aws)["LaunchTemplate"]["Version"] == "$Latest"

    code, status, message = error_of(lambda: refresh(aws, template_id, "3", AutoRollback=True))
    assert (code, status) == ("ValidationError", 400)
    assert "$Latest or $Default" in message
    refresh(aws, template_id, "3")
    code, status, _ = error_of(lambda: aws.autoscaling.rollback_instance_refresh(AutoScalingGroupName="sm-group"))
    assert (code, status) == ("IrreversibleInstanceRefresh", 400)
    assert wait_for_refresh(aws)["Status"] == "Successful"

    # $Default: the template's default version, whichever that is now.
    aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="sm-group", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Default"})
    aws.ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion="2")
    aws.autoscaling.set_desired_capacity(AutoScalingGroupName="sm-group", DesiredCapacity=4)
    assert versions_of_instances(aws) == ["2", "3", "3", "3"]
    assert group(aws)["LaunchTemplate"]["Version"] == "$Default"
    assert error_of(lambda: refresh(aws, template_id, "1", AutoRollback=True))[0] == "ValidationError"


def test_refresh_replaces_ignores_or_waits_for_protected_instances(aws: Aws, control: Control) -> None:
    template_id = set_up_group(aws, protected=True)
    assert all(i["ProtectedFromScaleIn"] for i in group(aws)["Instances"])
    refresh(aws, template_id, ScaleInProtectedInstances="Refresh")
    assert wait_for_refresh(aws)["Status"] == "Successful"
    assert versions_of_instances(aws) == ["2", "2"]
    # Replacements of a group that protects new instances are protected too.
    assert all(i["ProtectedFromScaleIn"] for i in group(aws)["Instances"])

    first, second = (i["InstanceId"] for i in group(aws)["Instances"])
    aws.autoscaling.set_instance_protection(
        AutoScalingGroupName="sm-group", InstanceIds=[first], ProtectedFromScaleIn=False)
    refresh(aws, template_id, "1", ScaleInProtectedInstances="Ignore")
    assert wait_for_refresh(aws)["Status"] == "Successful"
    assert versions_of_instances(aws) == ["1", "2"]
    assert second in {i["InstanceId"] for i in group(aws)["Instances"]}

    # Wait (the default): the refresh replaces the unprotected instance, then
    # waits for the protected one, which is unprotected meanwhile.
    replacement = next(i["InstanceId"] for i in group(aws)["Instances"] if i["InstanceId"] != second)
    aws.autoscaling.set_instance_protection(
        AutoScalingGroupName="sm-group", InstanceIds=[replacement], ProtectedFromScaleIn=False)
    refresh(aws, template_id, "2")
    waiting = wait_until("the wait", lambda: (
        r := latest_refresh(aws)).get("StatusReason", "").startswith("Waiting for instances that are protected") and r)
    assert waiting["Status"] == "InProgress" and second in waiting["StatusReason"]
    assert waiting["Preferences"]["ScaleInProtectedInstances"] == "Wait"
    aws.autoscaling.set_instance_protection(
        AutoScalingGroupName="sm-group", InstanceIds=[second], ProtectedFromScaleIn=False)
    assert wait_for_refresh(aws)["Status"] == "Successful"
    assert versions_of_instances(aws) == ["2", "2"]

    # Nobody unprotects: the refresh fails after one hour and rolls back.
    control.post("/_emulator/delays", {"time_scale": 0.0005})
    started = time.monotonic()
    refresh(aws, template_id, "1", AutoRollback=True)
    finished = wait_for_refresh(aws)
    assert finished["Status"] == "RollbackSuccessful"
    assert "one hour" in finished["RollbackDetails"]["RollbackReason"]
    assert time.monotonic() - started >= 3600 * 0.0005
    assert versions_of_instances(aws) == ["2", "2"]


def test_refresh_terminates_ignores_or_waits_for_standby_instances(aws: Aws, control: Control) -> None:
    template_id = set_up_group(aws, desired=3)
    assert len(group(aws)["Instances"]) == 3

    def standby() -> str:
        instance_id = next(i["InstanceId"] for i in group(aws)["Instances"] if i["LifecycleState"] == "InService")
        aws.autoscaling.enter_standby(AutoScalingGroupName="sm-group", InstanceIds=[instance_id],
                                      ShouldDecrementDesiredCapacity=True)
        return instance_id

    resting = standby()
    refresh(aws, template_id, "2", StandbyInstances="Ignore", MinHealthyPercentage=60)
    assert wait_for_refresh(aws)["Status"] == "Successful"
    states = {i["InstanceId"]: i for i in group(aws)["Instances"]}
    assert states[resting]["LifecycleState"] == "Standby"
    assert states[resting]["LaunchTemplate"]["Version"] == "1"

    refresh(aws, template_id, "1", StandbyInstances="Terminate", MinHealthyPercentage=60)
    assert wait_for_refresh(aws)["Status"] == "Successful"
    # Terminate: the Standby instance goes, without a replacement (it was
    # not part of the capacity).
    assert resting not in {i["InstanceId"] for i in group(aws)["Instances"]}
    assert versions_of_instances(aws) == ["1", "1"]

    resting = standby()
    refresh(aws, template_id, "2", MinHealthyPercentage=60)
    waiting = wait_until("the wait", lambda: (
        r := latest_refresh(aws)).get("StatusReason", "").endswith(f"{resting} is in Standby.") and r)
    assert waiting["Status"] == "InProgress"
    aws.autoscaling.exit_standby(AutoScalingGroupName="sm-group", InstanceIds=[resting])
    assert wait_for_refresh(aws)["Status"] == "Successful"
    assert resting not in {i["InstanceId"] for i in group(aws)["Instances"]}


def test_refresh_pauses_at_checkpoints_and_stops_at_the_last_one(aws: Aws) -> None:
    template_id = set_up_group(aws, desired=4)
    refresh(aws, template_id, "2", MinHealthyPercentage=75, InstanceWarmup=0,
            CheckpointPercentages=[50, 100], CheckpointDelay=100)
    paused = wait_until("the checkpoint", lambda: (
        r := latest_refresh(aws)).get("StatusReason", "").startswith("Checkpoint 50% reached") and r)
    assert (paused["Status"], paused["PercentageComplete"]) == ("InProgress", 50)
    assert versions_of_instances(aws) == ["1", "1", "2", "2"]
    done = wait_for_refresh(aws)
    assert done["Status"] == "Successful"
    assert done["Preferences"]["CheckpointPercentages"] == [50, 100]
    assert versions_of_instances(aws) == ["2", "2", "2", "2"]

    # A last checkpoint below 100 ends the refresh there, as on AWS.
    refresh(aws, template_id, "1", MinHealthyPercentage=75, InstanceWarmup=0,
            CheckpointPercentages=[25, 50], CheckpointDelay=20)
    done = wait_for_refresh(aws)
    assert done["Status"] == "Successful"
    assert done["Preferences"]["CheckpointDelay"] == 20
    assert versions_of_instances(aws) == ["1", "1", "2", "2"]
    assert group(aws)["LaunchTemplate"]["Version"] == "1"

    code, _, _ = error_of(lambda: refresh(aws, template_id, "2", CheckpointDelay=60))
    assert code == "ValidationError"


def test_a_launch_with_a_volume_below_its_snapshot_fails_the_refresh(aws: Aws, control: Control) -> None:
    small_root = {"ImageId": UBUNTU_AMI, "InstanceType": "m5.large",
                  "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 4}}]}
    template_id = set_up_group(aws, second=small_root)
    refresh(aws, template_id, "2")
    failed = wait_for_refresh(aws)
    assert failed["Status"] == "Failed"
    assert "Volume of size 4GB is smaller than snapshot" in failed["StatusReason"]
    assert versions_of_instances(aws) == ["1", "1"]

    refresh(aws, template_id, "2", AutoRollback=True)
    rolled_back = wait_for_refresh(aws)
    assert rolled_back["Status"] == "RollbackSuccessful"
    assert "Launching EC2 instance failed" in rolled_back["RollbackDetails"]["RollbackReason"]

    # Scaling out with it fails the launch, not the call.
    aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="sm-group", LaunchTemplate={"LaunchTemplateId": template_id, "Version": "2"})
    aws.autoscaling.set_desired_capacity(AutoScalingGroupName="sm-group", DesiredCapacity=3)
    assert len(group(aws)["Instances"]) == 2
    [failure] = control.events("launch_failed")
    assert failure["id"] == "sm-group" and failure["code"] == "InvalidBlockDeviceMapping"


# -- faults, calls, control --------------------------------------------------------------

def test_throttling_refuses_every_nth_call_with_each_protocols_error(aws: Aws, control: Control) -> None:
    control.post("/_emulator/faults", {"throttle_fraction": 0.25})
    outcomes = []
    for _ in range(8):
        try:
            aws.ec2.describe_vpcs()
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append((error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]))
    assert outcomes == ["ok"] * 3 + [("RequestLimitExceeded", 503)] + ["ok"] * 3 + [("RequestLimitExceeded", 503)]
    assert control.get("/_emulator/health") == {"ok": True, "time_scale": TIME_SCALE}

    control.post("/_emulator/faults", {"throttle_fraction": 1.0})
    assert error_of(lambda: aws.autoscaling.describe_auto_scaling_groups())[:2] == ("Throttling", 400)
    assert error_of(lambda: aws.ssm.describe_instance_information())[:2] == ("ThrottlingException", 400)
    control.post("/_emulator/faults", {"throttle_only": ["ssm:GetCommandInvocation"]})
    aws.ec2.describe_vpcs()
    control.delete("/_emulator/faults")
    aws.autoscaling.describe_auto_scaling_groups()
    throttled = [c for c in control.get("/_emulator/calls")["calls"] if c["fault"] == "throttled"]
    assert len(throttled) == 4


def test_throttle_window_refuses_every_call_until_it_disarms(aws: Aws, control: Control) -> None:
    # 200 emulated seconds: one second at the tests' time scale.
    control.post("/_emulator/faults", {"throttle_for_seconds": 200, "throttle_only": ["ec2", "ssm"]})
    started = time.monotonic()
    assert error_of(lambda: aws.ec2.describe_vpcs())[:2] == ("RequestLimitExceeded", 503)
    assert error_of(lambda: aws.ssm.describe_instance_information())[:2] == ("ThrottlingException", 400)
    aws.autoscaling.describe_auto_scaling_groups()
    assert control.get("/_emulator/faults")["faults"]["throttle_for_seconds"] == 200

    def passes() -> bool:
        try:
            aws.ec2.describe_vpcs()
            return True
        except ClientError as error:
            assert error.response["Error"]["Code"] == "RequestLimitExceeded"
            return False

    wait_until("the window to end", passes, timeout=5)
    assert time.monotonic() - started >= 0.95
    assert control.get("/_emulator/faults")["faults"] == {"throttle_only": ["ec2", "ssm"]}
    status, body = control.request("POST", "/_emulator/faults", {"throttle_for_seconds": -1})
    assert status == 400 and "throttle_for_seconds" in body["error"]


def test_server_error_burst_fails_the_next_calls(aws: Aws, control: Control) -> None:
    control.post("/_emulator/faults", {"server_error_burst": 2})
    assert error_of(lambda: aws.ec2.describe_vpcs())[:2] == ("InternalError", 500)
    assert error_of(lambda: aws.autoscaling.describe_auto_scaling_groups())[:2] == ("InternalFailure", 500)
    aws.ssm.describe_instance_information()
    assert control.get("/_emulator/faults")["faults"] == {}


def test_calls_are_counted_by_service_and_action(aws: Aws, control: Control) -> None:
    instance_id = launch(aws)
    aws.ec2.describe_instances(InstanceIds=[instance_id])
    aws.autoscaling.describe_auto_scaling_groups()
    aws.ssm.describe_instance_information()
    calls = control.get("/_emulator/calls")
    assert calls["counts"] == {
        "ec2:RunInstances": 1, "ec2:DescribeInstances": 1,
        "autoscaling:DescribeAutoScalingGroups": 1, "ssm:DescribeInstanceInformation": 1,
    }
    assert calls["mutating_counts"] == {"ec2:RunInstances": 1}
    assert [c["mutating"] for c in calls["calls"]] == [True, False, False, False]
    assert all(c["status"] == 200 for c in calls["calls"])
    control.delete("/_emulator/calls")
    assert control.get("/_emulator/calls")["total"] == 0


def test_control_api_rejects_unknown_switches_and_moto_reset_clears_everything(aws: Aws, control: Control) -> None:
    status, body = control.request("POST", "/_emulator/faults", {"throttle_fractoin": 0.5})
    assert status == 400 and "throttle_fractoin" in body["error"]
    status, body = control.request("POST", "/_emulator/delays", {"ssm_command": -1})
    assert status == 400
    control.post("/_emulator/delays", {"ssm_command": 45})
    assert control.get("/_emulator/delays")["delays"]["ssm_command"] == 45

    template_id = template_group(aws, desired=1)
    aws.autoscaling.start_instance_refresh(AutoScalingGroupName="sm-group",
                                           DesiredConfiguration=to_version(template_id))
    control.post("/_emulator/faults", {"refresh_fail_at_percent": 10})
    status, _ = control.request("POST", "/moto-api/reset", {})
    assert status == 200
    assert control.get("/_emulator/faults")["faults"] == {}
    assert control.get("/_emulator/calls")["total"] == 0
    assert control.events() == []
    template_group(aws, desired=1)
    assert aws.autoscaling.describe_instance_refreshes(AutoScalingGroupName="sm-group")["InstanceRefreshes"] == []


# -- the seed and the script --------------------------------------------------------------

def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_seed_builds_the_stream_manager_fleet_once(endpoint: str, aws: Aws, control: Control) -> None:
    result = subprocess.run([str(EMULATOR), "seed", "--endpoint", endpoint],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "red5pro-sm-asg" in result.stdout

    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["red5pro-vpc"]}])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    found = aws.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert sorted((tags_of(s)["Name"], s["CidrBlock"], s["AvailabilityZone"]) for s in found) == [
        ("red5pro-sm-subnet-a", "10.0.1.0/24", "us-east-1a"),
        ("red5pro-sm-subnet-b", "10.0.2.0/24", "us-east-1b"),
    ]
    # Red5 Pro's VPC gives every instance a public IP: the builder reaches SSM through it.
    assert all(s["MapPublicIpOnLaunch"] for s in found)
    security_groups = {g["GroupName"]: g for g in aws.ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["SecurityGroups"]}
    assert sorted(p["FromPort"] for p in security_groups["red5pro-sm-sg"]["IpPermissions"]) == [22, 443, 5080]
    [db_rule] = security_groups["red5pro-db-sg"]["IpPermissions"]
    assert db_rule["FromPort"] == 3306
    assert db_rule["UserIdGroupPairs"][0]["GroupId"] == security_groups["red5pro-sm-sg"]["GroupId"]
    assert aws.iam.get_instance_profile(InstanceProfileName="red5pro-sm-builder")["InstanceProfile"]["Roles"]
    policies = aws.iam.list_attached_role_policies(RoleName="red5pro-sm-builder")["AttachedPolicies"]
    assert [p["PolicyName"] for p in policies] == ["AmazonSSMManagedInstanceCore"]

    images = {i["Name"]: i for i in aws.ec2.describe_images(Owners=["self"])["Images"]}
    assert set(images) == {"red5pro-stream-manager-12.3.0-seed", "red5pro-stream-manager-legacy-12.3.0-seed"}
    main_image = images["red5pro-stream-manager-12.3.0-seed"]
    legacy_image = images["red5pro-stream-manager-legacy-12.3.0-seed"]
    assert tags_of(main_image) == {"Name": "red5pro-sm-12.3.0"}
    assert tags_of(legacy_image) == {"Name": "red5pro-sm-legacy-12.3.0"}
    for image in images.values():
        assert image["State"] == "available"
        assert image["RootDeviceName"] == "/dev/xvda"
        [root] = [m for m in image["BlockDeviceMappings"] if m["DeviceName"] == "/dev/xvda"]
        assert root["Ebs"]["VolumeSize"] == 8 and root["Ebs"]["SnapshotId"].startswith("snap-")

    [template] = aws.ec2.describe_launch_template_versions(LaunchTemplateName="red5pro-sm")["LaunchTemplateVersions"]
    assert template["VersionNumber"] == 1 and template["DefaultVersion"] is True
    assert template["VersionDescription"] == "SM-red5pro-server-12.3.0-nov01-m5large-template"
    data = template["LaunchTemplateData"]
    assert data["ImageId"] == main_image["ImageId"]
    assert data["InstanceType"] == "m5.large" and data["KeyName"] == "red5pro-sm-key"
    assert data["SecurityGroupIds"] == [security_groups["red5pro-sm-sg"]["GroupId"]]
    assert data["IamInstanceProfile"] == {"Name": "red5pro-sm-builder"}
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["Monitoring"] == {"Enabled": True}
    volumes = {m["DeviceName"]: m["Ebs"] for m in data["BlockDeviceMappings"]}
    assert (volumes["/dev/xvda"]["VolumeSize"], volumes["/dev/xvda"]["VolumeType"]) == (16, "gp3")
    assert volumes["/dev/xvda"]["Encrypted"] is True and volumes["/dev/sdf"]["VolumeSize"] == 50
    assert {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "streaming"}]} in data["TagSpecifications"]
    assert "red5-web.properties" in base64.b64decode(data["UserData"]).decode()
    [lt] = aws.ec2.describe_launch_templates(LaunchTemplateNames=["red5pro-sm"])["LaunchTemplates"]
    assert not any(t["Key"].startswith("red5-rollout:") for t in lt.get("Tags", []))

    target_group = aws.elbv2.describe_target_groups(Names=["red5pro-sm-tg"])["TargetGroups"][0]
    assert (target_group["Protocol"], target_group["Port"]) == ("HTTP", 5080)
    assert (target_group["HealthCheckProtocol"], target_group["HealthCheckPath"]) == ("HTTP", "/")
    [alb] = aws.elbv2.describe_load_balancers(LoadBalancerArns=target_group["LoadBalancerArns"])["LoadBalancers"]
    assert sorted(z["SubnetId"] for z in alb["AvailabilityZones"]) == sorted(s["SubnetId"] for s in found)
    main_group = group(aws, "red5pro-sm-asg")
    assert main_group["LaunchTemplate"]["LaunchTemplateName"] == "red5pro-sm"
    assert main_group["LaunchTemplate"]["Version"] == "$Default"
    assert main_group["NewInstancesProtectedFromScaleIn"] is True
    assert (main_group["MinSize"], main_group["MaxSize"], main_group["DesiredCapacity"]) == (1, 4, 2)
    assert main_group["TargetGroupARNs"] == [target_group["TargetGroupArn"]]
    assert main_group["HealthCheckType"] == "ELB" and main_group["HealthCheckGracePeriod"] == 300
    assert main_group["Tags"] == []
    for member in main_group["Instances"]:
        assert member["LifecycleState"] == "InService" and member["ProtectedFromScaleIn"] is True
        assert member["LaunchTemplate"]["Version"] == "1"
    members = [m["InstanceId"] for m in main_group["Instances"]]
    for instance in (i for r in aws.ec2.describe_instances(InstanceIds=members)["Reservations"]
                     for i in r["Instances"]):
        assert instance["RootDeviceName"] == "/dev/xvda"
        assert sorted(m["DeviceName"] for m in instance["BlockDeviceMappings"]) == ["/dev/sdf", "/dev/xvda"]
        assert tags_of(instance)["team"] == "streaming"
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["IamInstanceProfile"]["Arn"].endswith("/red5pro-sm-builder")
        assert not any(k.startswith("red5-rollout:") for k in tags_of(instance))
    legacy = group(aws, "red5pro-sm-legacy-asg")
    assert legacy["LaunchConfigurationName"] == "SM-red5pro-server-12.3.0-nov01-m5large-LC"
    assert (legacy["MinSize"], legacy["MaxSize"], legacy["DesiredCapacity"]) == (1, 2, 1)
    assert legacy["Tags"] == []
    [configuration] = aws.autoscaling.describe_launch_configurations()["LaunchConfigurations"]
    assert configuration["ImageId"] == legacy_image["ImageId"]
    assert configuration["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    health = aws.elbv2.describe_target_health(TargetGroupArn=target_group["TargetGroupArn"])
    assert len(health["TargetHealthDescriptions"]) == 3
    seeds = aws.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["red5pro-seed-*"]}])
    assert {i["State"]["Name"] for r in seeds["Reservations"] for i in r["Instances"]} == {"terminated"}

    control.delete("/_emulator/calls")
    again = subprocess.run([str(EMULATOR), "seed", "--endpoint", endpoint],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already seeded" in again.stdout
    assert control.get("/_emulator/calls")["mutating_counts"] == {}


def test_the_reads_preflight_makes_answer_as_aws_does(endpoint: str, aws: Aws) -> None:
    """What preflight relies on: rules found by the group they admit, IAM documents
    URL-encoded, unknown target groups and instance profiles refused with AWS's codes."""
    vpc = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    sm = aws.ec2.create_security_group(GroupName="sm", Description="sm", VpcId=vpc)["GroupId"]
    db = aws.ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    other = aws.ec2.create_security_group(GroupName="other", Description="other", VpcId=vpc)["GroupId"]
    aws.ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "UserIdGroupPairs": [{"GroupId": sm}]}])
    aws.ec2.authorize_security_group_ingress(GroupId=other, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    admitting = aws.ec2.describe_security_groups(
        Filters=[{"Name": "ip-permission.group-id", "Values": [sm]}])["SecurityGroups"]
    assert [g["GroupId"] for g in admitting] == [db]

    subnet = aws.ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]
    assert subnet["MapPublicIpOnLaunch"] is False, "a new subnet of a VPC of one's own gives no public IP"
    assert aws.ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"] == []

    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    aws.iam.create_role(RoleName="no-ssm", AssumeRolePolicyDocument=json.dumps(trust))
    aws.iam.put_role_policy(RoleName="no-ssm", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    aws.iam.create_instance_profile(InstanceProfileName="no-ssm")
    aws.iam.add_role_to_instance_profile(InstanceProfileName="no-ssm", RoleName="no-ssm")
    assert [r["RoleName"] for r in aws.iam.get_instance_profile(InstanceProfileName="no-ssm")["InstanceProfile"]["Roles"]] == ["no-ssm"]
    assert aws.iam.list_attached_role_policies(RoleName="no-ssm")["AttachedPolicies"] == []
    assert aws.iam.list_role_policies(RoleName="no-ssm")["PolicyNames"] == ["s3"]
    # AWS sends policy documents URL-encoded (boto3 decodes them; the Rust SDK does not).
    request = urllib.request.Request(
        endpoint, method="POST",
        data=b"Action=GetRolePolicy&Version=2010-05-08&RoleName=no-ssm&PolicyName=s3",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, "
                                  "SignedHeaders=host, Signature=0"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read().decode()
    assert "%22s3%3AGetObject%22" in raw, raw
    assert error_of(lambda: aws.iam.get_instance_profile(InstanceProfileName="missing"))[:2] == ("NoSuchEntity", 404)
    missing = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/missing/0123456789abcdef"
    assert error_of(lambda: aws.elbv2.describe_target_groups(TargetGroupArns=[missing]))[0] == "TargetGroupNotFound"


def test_background_start_reuses_the_running_emulator_and_stop_ends_it(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    env = dict(os.environ)

    def emulator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(EMULATOR), *args], capture_output=True, text=True, timeout=120, env=env)

    started = emulator("start", "--state-dir", str(state))
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and "\n" not in url
    try:
        assert emulator("start", "--state-dir", str(state)).stdout.strip() == url
        assert emulator("endpoint", "--state-dir", str(state)).stdout.strip() == url
        assert Control(url).get("/_emulator/health")["ok"] is True
    finally:
        stopped = emulator("stop", "--state-dir", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert not (state / "pid").exists()
    assert emulator("endpoint", "--state-dir", str(state)).returncode == 1


def test_describe_images_by_ids_refuses_the_call_when_one_image_does_not_exist(aws: Aws) -> None:
    assert [i["ImageId"] for i in aws.ec2.describe_images(ImageIds=[UBUNTU_AMI])["Images"]] == [UBUNTU_AMI]
    code, status = error_of(lambda: aws.ec2.describe_images(ImageIds=[UBUNTU_AMI, "ami-0000000000000dead"]))[:2]
    assert (code, status) == ("InvalidAMIID.NotFound", 400)
    # DescribeInstances did so already.
    code, status = error_of(lambda: aws.ec2.describe_instances(InstanceIds=["i-0000000000000dead"]))[:2]
    assert (code, status) == ("InvalidInstanceID.NotFound", 400)


def test_copy_image_copies_another_regions_image_pending_tagged_and_once_per_token(
        aws: Aws, control: Control) -> None:
    # The source: an Amazon Linux image in us-east-1 with a recordings volume and a tag.
    instance_id = aws.ec2.run_instances(ImageId=OTHER_AMI, MinCount=1, MaxCount=1, InstanceType="m5.large",
                                        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50}}],
                                        )["Instances"][0]["InstanceId"]
    wait_until("running", lambda: instance_state(aws, instance_id) == "running")
    source = aws.ec2.create_image(
        InstanceId=instance_id, Name="red5pro-sm-12.4.0",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "team", "Value": "streaming"}]}],
    )["ImageId"]
    west = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2",
    ).client("ec2", endpoint_url=control.url, config=Config(retries={"total_max_attempts": 1}))

    def copy(token: str, name: str = "red5pro-sm-12.4.0", copy_tags: bool = False) -> Any:
        return west.copy_image(
            SourceRegion="us-east-1", SourceImageId=source, Name=name, ClientToken=token,
            CopyImageTags=copy_tags,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "red5-rollout:version", "Value": "12.4.0"}]},
                {"ResourceType": "snapshot", "Tags": [{"Key": "red5-rollout:version", "Value": "12.4.0"}]},
            ],
        )

    # AWS copies only an available image.
    code, status, _ = error_of(lambda: copy("too-early"))
    assert (code, status) == ("InvalidAMIID.NotFound", 400)
    wait_until("the source available",
               lambda: aws.ec2.describe_images(ImageIds=[source])["Images"][0]["State"] == "available")
    code, _, _ = error_of(lambda: west.copy_image(SourceRegion="us-east-1", SourceImageId="ami-12345678",
                                                  Name="nothing"))
    assert code == "InvalidAMIID.NotFound"

    copied = copy("promote-12.4.0")["ImageId"]
    assert copy("promote-12.4.0")["ImageId"] == copied
    code, status, _ = error_of(lambda: copy("promote-12.4.0", name="another-name"))
    assert (code, status) == ("IdempotentParameterMismatch", 400)
    # The name is the destination region's to check; the source region's own image does not count.
    code, _, _ = error_of(lambda: copy("second-token"))
    assert code == "InvalidAMIName.Duplicate"
    assert len(west.describe_images(Owners=["self"])["Images"]) == 1

    image = west.describe_images(ImageIds=[copied])["Images"][0]
    assert image["State"] == "pending"
    # The request's tags, not the source's (AWS copies user tags only with CopyImageTags).
    assert image["Tags"] == [{"Key": "red5-rollout:version", "Value": "12.4.0"}]
    assert image["RootDeviceName"] == "/dev/xvda"
    mappings = {m["DeviceName"]: m["Ebs"] for m in image["BlockDeviceMappings"]}
    source_mappings = {m["DeviceName"]: m["Ebs"]
                       for m in aws.ec2.describe_images(ImageIds=[source])["Images"][0]["BlockDeviceMappings"]}
    assert {d: e["VolumeSize"] for d, e in mappings.items()} == {"/dev/xvda": 8, "/dev/sdf": 50}
    snapshots = west.describe_snapshots(SnapshotIds=[e["SnapshotId"] for e in mappings.values()])["Snapshots"]
    assert sorted(s["VolumeSize"] for s in snapshots) == [8, 50]
    assert all(s["Tags"] == [{"Key": "red5-rollout:version", "Value": "12.4.0"}] for s in snapshots)
    assert not set(e["SnapshotId"] for e in mappings.values()) & set(
        e["SnapshotId"] for e in source_mappings.values())
    wait_until("the copy available",
               lambda: west.describe_images(ImageIds=[copied])["Images"][0]["State"] == "available")
    assert copied in [e["id"] for e in control.events("image_available")]

    with_tags = copy("with-tags", name="red5pro-sm-12.4.0-tagged", copy_tags=True)["ImageId"]
    tags = west.describe_images(ImageIds=[with_tags])["Images"][0]["Tags"]
    assert sorted(t["Key"] for t in tags) == ["red5-rollout:version", "team"]


def test_update_auto_scaling_group_keeps_min_desired_and_max_in_order(aws: Aws) -> None:
    template_group(aws, desired=2)

    def bounds() -> tuple[int, int, int]:
        g = group(aws)
        return g["MinSize"], g["DesiredCapacity"], g["MaxSize"]

    assert bounds() == (1, 2, 4)
    # A new minimum above the desired capacity raises it; a new maximum below lowers it.
    aws.autoscaling.update_auto_scaling_group(AutoScalingGroupName="sm-group", MinSize=3, MaxSize=4)
    assert bounds() == (3, 3, 4)
    aws.autoscaling.update_auto_scaling_group(AutoScalingGroupName="sm-group", MinSize=1, MaxSize=2)
    assert bounds() == (1, 2, 2)
    # Within the bounds, the desired capacity stays.
    aws.autoscaling.update_auto_scaling_group(AutoScalingGroupName="sm-group", MinSize=1, MaxSize=6)
    assert bounds() == (1, 2, 6)
    code, status, message = error_of(lambda: aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="sm-group", MinSize=5, MaxSize=3))
    assert (code, status, message) == (
        "ValidationError", 400, "Max bound, 3, must be greater than or equal to min bound, 5")
    code, _, message = error_of(lambda: aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="sm-group", DesiredCapacity=9))
    assert (code, message) == (
        "ValidationError", "Desired capacity:9 must be between the specified min size:1 and max size:6")
    assert bounds() == (1, 2, 6)


def test_modify_launch_template_moves_the_default_version_only_to_one_that_exists(aws: Aws) -> None:
    template_id = template_group(aws, desired=1)
    aws.ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion="2")
    [template] = aws.ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"]
    assert template["DefaultVersionNumber"] == 2
    [default] = aws.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["$Default"])["LaunchTemplateVersions"]
    assert (default["VersionNumber"], default["DefaultVersion"]) == (2, True)
    aws.ec2.modify_launch_template(LaunchTemplateName="sm-template", DefaultVersion="1")
    aws.ec2.delete_launch_template_versions(LaunchTemplateId=template_id, Versions=["2"])
    for missing in ("2", "7"):
        code, status, _ = error_of(lambda: aws.ec2.modify_launch_template(
            LaunchTemplateId=template_id, DefaultVersion=missing))
        assert (code, status) == ("InvalidLaunchTemplateId.VersionNotFound", 400)
    [template] = aws.ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"]
    assert template["DefaultVersionNumber"] == 1
