"""Auto Scaling groups that remember how each instance was launched.

Moto reports the group's current configuration for every instance, which
hides the one fact an instance refresh is about: which instances still run
the old configuration. Here every instance launched for a group records its
launch template version (resolved to a number) or launch configuration name,
and DescribeAutoScalingInstances and DescribeAutoScalingGroups report that.

It also fixes moto where it differs from AWS in ways the runner depends on:

- a duplicate launch configuration name fails with ``AlreadyExists``
  instead of silently replacing the existing one;
- an unknown launch configuration or launch template in CreateAutoScalingGroup
  or UpdateAutoScalingGroup is a ``ValidationError`` (400), not a 500;
- switching a group between a launch template and a launch configuration
  really switches it (moto kept the old one and launched from it);
- a launch template version made by CreateLaunchTemplateVersion keeps its
  user data as moto's base64 type, as CreateLaunchTemplate does, so groups
  can launch from it (moto kept the plain string and failed its own type
  assertion on every launch);
- group launches spread over the group's subnets, use the key pair of a
  launch configuration, and start ``Pending`` like any other instance;
- a group on a launch template's ``$Latest`` or ``$Default`` resolves the
  version at every launch (scale-out, replacement, refresh), while
  DescribeAutoScalingGroups keeps reporting ``$Latest`` or ``$Default``;
- a launch AWS refuses (a volume smaller than its snapshot) leaves the group
  short and records a ``launch_failed`` event instead of failing the API
  call that asked for capacity;
- DeleteLaunchConfiguration refuses a configuration that a group uses with
  ``ResourceInUse`` (400), as AWS does; moto deleted it from under the group;
- UpdateAutoScalingGroup keeps ``MinSize <= DesiredCapacity <= MaxSize`` as
  AWS documents it: a new ``MinSize`` above the group's desired capacity (or
  a new ``MaxSize`` below it), given without ``DesiredCapacity``, moves the
  desired capacity to it; a ``MinSize`` above the ``MaxSize`` and a
  ``DesiredCapacity`` outside them are ``ValidationError`` (moto compared
  with the number of instances and accepted ``MinSize > MaxSize``);
- DescribeAutoScalingGroups refuses more than 50 ``AutoScalingGroupNames``
  (or more than ``MaxRecords``, when that is above 50) with AWS's
  ``ValidationError``; moto accepted any number.
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    ASG_NAME_TAG,
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.utils import parse_user_data

from . import instances
from .state import EMULATOR


class AlreadyExists(ServiceException):
    code = "AlreadyExists"


class ResourceInUse(ServiceException):
    code = "ResourceInUse"


_original_delete_launch_configuration = AutoScalingBackend.delete_launch_configuration


def delete_launch_configuration(self: AutoScalingBackend, launch_configuration_name: str) -> None:
    for group in self.autoscaling_groups.values():
        if getattr(group, "launch_configuration_name", None) == launch_configuration_name:
            raise ResourceInUse(
                f"Cannot delete launch configuration {launch_configuration_name} because "
                f"it is attached to AutoScalingGroup {group.name}"
            )
    _original_delete_launch_configuration(self, launch_configuration_name)


def find_template(ec2_backend: Any, template_id: str | None, template_name: str | None) -> Any:
    """Look up a launch template for an Auto Scaling call, raising AWS's ValidationError."""
    if bool(template_id) == bool(template_name):
        raise ValidationError(
            "Valid requests must contain either launchTemplateId or LaunchTemplateName"
        )
    for template in ec2_backend.launch_templates.values():
        if template.id == template_id or (template_name and template.name == template_name):
            return template
    shown = template_id or template_name
    raise ValidationError(
        f"You must use a valid fully-formed launch template. The specified launch "
        f"template, {shown}, does not exist."
    )


def resolve_version(template: Any, version: str | None) -> int:
    """The version number that ``version`` ($Latest, $Default, "3" or None) denotes."""
    text = str(version) if version else "$Default"
    if text.lower() == "$latest":
        return template.latest_version_number
    if text.lower() == "$default":
        return template.default_version_number
    if not text.isdigit() or not 1 <= int(text) <= len(template.versions):
        raise ValidationError(
            f"You must use a valid fully-formed launch template. The specified launch "
            f"template version {text} of {template.name} does not exist."
        )
    return int(text)


def group_spec(group: FakeAutoScalingGroup) -> dict[str, Any]:
    """The configuration a group launches new instances with, as a spec."""
    if group.ec2_launch_template is not None:
        template = group.ec2_launch_template
        requested = getattr(group, "provided_launch_template_version", None)
        return {
            "kind": "template",
            "id": template.id,
            "name": template.name,
            "version": requested,
            "number": resolve_version(template, group.launch_template_version),
        }
    return {"kind": "configuration", "name": group.launch_config.name}


def same_config(spec_a: dict[str, Any] | None, spec_b: dict[str, Any] | None) -> bool:
    if not spec_a or not spec_b or spec_a["kind"] != spec_b["kind"]:
        return False
    if spec_a["kind"] == "template":
        return spec_a["id"] == spec_b["id"] and spec_a["number"] == spec_b["number"]
    return spec_a["name"] == spec_b["name"]


def apply_spec(group: FakeAutoScalingGroup, spec: dict[str, Any]) -> None:
    """Point the group at a configuration, as UpdateAutoScalingGroup would."""
    if spec["kind"] == "template":
        group._set_launch_configuration(
            None, {"LaunchTemplateId": spec["id"], "Version": spec["version"]}, None
        )
    else:
        group._set_launch_configuration(spec["name"], {}, None)


def _pick_subnet(group: FakeAutoScalingGroup) -> str | None:
    if not group.vpc_zone_identifier:
        return None
    subnets = [s for s in group.vpc_zone_identifier.split(",") if s]
    counts = {s: 0 for s in subnets}
    for state in group.instance_states:
        subnet = state.instance.subnet_id
        if subnet in counts:
            counts[subnet] += 1
    # AWS balances a group across its Availability Zones; the least used
    # subnet, in the group's order, gets the next instance.
    return min(subnets, key=lambda s: (counts[s], subnets.index(s)))


def _launch_arguments(group: FakeAutoScalingGroup, spec: dict[str, Any],
                      subnet_id: str | None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """RunInstances arguments for one instance of ``group`` launched with ``spec``."""
    ec2 = group.autoscaling_backend.ec2_backend
    tags = group.get_propagated_tags()
    tags[ASG_NAME_TAG] = group.name
    kwargs: dict[str, Any] = {
        "is_instance_type_default": False,
        "subnet_id": subnet_id,
    }
    if subnet_id is None:
        kwargs["placement"] = group.availability_zones[0]
    if spec["kind"] == "template":
        template = ec2.get_launch_template(spec["id"])
        version = template.get_version(spec["number"])
        instance_tags = dict(tags)
        instance_tags.update(version.instance_tags)
        kwargs.update(
            instance_type=version.instance_type or "m1.small",
            tags={"instance": instance_tags},
            launch_template={"LaunchTemplateId": template.id, "Version": str(version.number)},
        )
        return version.image_id, version.user_data, version.security_groups, kwargs
    config = group.autoscaling_backend.launch_configurations[spec["name"]]
    kwargs.update(
        instance_type=config.instance_type,
        tags={"instance": dict(tags)},
        launch_config=config,
        key_name=config.key_name,
        associate_public_ip=config.associate_public_ip_address,
    )
    return config.image_id, config.user_data, config.security_groups, kwargs


def check_launch(group: FakeAutoScalingGroup, spec: dict[str, Any]) -> None:
    """Raise the error AWS would fail a launch of ``spec`` into ``group`` with."""
    image_id, _, _, kwargs = _launch_arguments(group, spec, _pick_subnet(group))
    instances.check_launch(group.autoscaling_backend.ec2_backend, image_id, **kwargs)


def launch_instances(group: FakeAutoScalingGroup, count: int,
                     spec: dict[str, Any] | None = None) -> list[Any]:
    """Launch ``count`` instances into the group with ``spec`` (default: the group's).

    A launch AWS would refuse (a volume smaller than its snapshot, say)
    raises that error before any instance is launched.
    """
    spec = spec or group_spec(group)
    ec2 = group.autoscaling_backend.ec2_backend
    launched = []
    for _ in range(count):
        image_id, user_data, security_groups, kwargs = _launch_arguments(
            group, spec, _pick_subnet(group)
        )
        reservation = ec2.run_instances(image_id, 1, user_data, security_groups, **kwargs)
        for instance in reservation.instances:
            instance.autoscaling_group = group
            instance.red5_launch_spec = dict(spec)
            state = InstanceState(
                instance,
                protected_from_scale_in=group.new_instances_protected_from_scale_in,
            )
            group.instance_states.append(state)
            launched.append(instance)
    return launched


def terminate_instances(group: FakeAutoScalingGroup, instance_ids: list[str]) -> None:
    """Take instances out of the group and terminate them, without replacements."""
    if not instance_ids:
        return
    backend = group.autoscaling_backend
    group.instance_states = [
        s for s in group.instance_states if s.instance.id not in instance_ids
    ]
    backend.elbv2_backend.notify_terminate_instances(instance_ids)
    backend.ec2_backend.terminate_instances(instance_ids)
    refresh_load_balancers(group)


def refresh_load_balancers(group: FakeAutoScalingGroup) -> None:
    backend = group.autoscaling_backend
    if group.name in backend.autoscaling_groups:
        backend.update_attached_elbs(group.name)
        backend.update_attached_target_groups(group.name)


# -- patches -------------------------------------------------------------------

_original_create_launch_configuration = AutoScalingBackend.create_launch_configuration
_original_create_version = LaunchTemplate.create_version
_original_set_launch_configuration = FakeAutoScalingGroup._set_launch_configuration
_original_describe_auto_scaling_groups = AutoScalingResponse.describe_auto_scaling_groups

# DescribeAutoScalingGroups: "By default, you can only specify up to 50 names.
# You can optionally increase this limit using the MaxRecords property"
# (whose maximum is 100). AWS answers a longer list with ValidationError.
GROUP_NAMES_LIMIT = 50
MAX_RECORDS_LIMIT = 100


def create_launch_configuration(self: AutoScalingBackend, name: str, *args: Any, **kwargs: Any) -> Any:
    if name in self.launch_configurations:
        raise AlreadyExists(
            f"Launch Configuration by this name already exists - A launch configuration "
            f"already exists with the name {name}"
        )
    return _original_create_launch_configuration(self, name, *args, **kwargs)


def describe_auto_scaling_groups(self: AutoScalingResponse) -> Any:
    names = self._get_param("AutoScalingGroupNames", []) or []
    max_records = self._get_int_param("MaxRecords") or GROUP_NAMES_LIMIT
    limit = min(max(GROUP_NAMES_LIMIT, max_records), MAX_RECORDS_LIMIT)
    if len(names) > limit:
        raise ValidationError(
            f"The number of group names that may be passed in is limited to {limit}"
        )
    return _original_describe_auto_scaling_groups(self)


def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> Any:
    if isinstance(data.get("UserData"), str):
        data = dict(data, UserData=parse_user_data(data["UserData"]))
    return _original_create_version(self, data, description)


def _set_launch_configuration(self: FakeAutoScalingGroup, launch_config_name: str | None,
                              launch_template: dict[str, Any] | None,
                              mixed_instances_policy: dict[str, Any] | None) -> None:
    if launch_config_name and launch_config_name not in self.autoscaling_backend.launch_configurations:
        raise ValidationError(
            f"Launch configuration name not found - Launch configuration "
            f"{launch_config_name} not found"
        )
    if launch_template:
        template = find_template(
            self.ec2_backend,
            launch_template.get("LaunchTemplateId"),
            launch_template.get("LaunchTemplateName"),
        )
        resolve_version(template, launch_template.get("Version"))
    _original_set_launch_configuration(self, launch_config_name, launch_template, mixed_instances_policy)
    if launch_config_name:
        self.ec2_launch_template = None
        self.provided_launch_template_version = None
    elif launch_template or mixed_instances_policy:
        self.launch_config = None
        self.launch_configuration_name = None


def replace_autoscaling_group_instances(self: FakeAutoScalingGroup, count_needed: int,
                                        propagated_tags: dict[str, str]) -> None:
    # On AWS a launch that fails is a failed scaling activity, not an error
    # of the API call that changed the capacity: the group stays short.
    try:
        launch_instances(self, count_needed)
    except ServiceException as error:
        EMULATOR.record_event(
            "launch_failed", self.name, code=error.code, reason=error.message,
        )


def active_instances(self: FakeAutoScalingGroup) -> list[InstanceState]:
    # Instances still booting count towards the desired capacity, or moto
    # would launch more for every instance that is still pending.
    return [s for s in self.instance_states if s.stored_lifecycle_state == "InService"]


def _get_lifecycle_state(self: InstanceState) -> str:
    stored = self.stored_lifecycle_state
    if stored == "InService" and self.instance._state.name == "pending":
        return "Pending"
    return stored


def _set_lifecycle_state(self: InstanceState, value: str) -> None:
    self.stored_lifecycle_state = value


def _instance_launch_template(self: InstanceState) -> dict[str, Any] | None:
    spec = getattr(self.instance, "red5_launch_spec", None)
    if spec is None:
        spec = _fallback_spec(self)
    if not spec or spec["kind"] != "template":
        return None
    return {
        "LaunchTemplateId": spec["id"],
        "LaunchTemplateName": spec["name"],
        "Version": str(spec["number"]),
    }


def _instance_launch_configuration_name(self: InstanceState) -> str | None:
    spec = getattr(self.instance, "red5_launch_spec", None)
    if spec is None:
        spec = _fallback_spec(self)
    if not spec or spec["kind"] != "configuration":
        return None
    return spec["name"]


def _fallback_spec(state: InstanceState) -> dict[str, Any] | None:
    # Instances attached with AttachInstances were not launched by the
    # group; report the group's configuration for them, as moto did.
    group = state.auto_scaling_group
    try:
        return group_spec(group) if group is not None else None
    except Exception:  # noqa: BLE001 - a group without any configuration
        return None


def update_attached_target_groups(self: AutoScalingBackend, group_name: str) -> None:
    # Target groups refuse instances that are not running yet (as on AWS),
    # so only running group members are registered here; the others are
    # registered when they start running.
    group = self.autoscaling_groups[group_name]
    if not group.target_group_arns:
        return
    running = [
        s.instance.id for s in group.instance_states if s.instance._state.name == "running"
    ]
    if not running:
        return
    for target_group in self.elbv2_backend.describe_target_groups(
        target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
    ):
        self.elbv2_backend.register_targets(
            target_group.arn, [{"Id": i, "Port": target_group.port} for i in running]
        )


def _register_when_running(instance: Any) -> None:
    group = getattr(instance, "autoscaling_group", None)
    if group is None:
        return
    if any(s.instance is instance for s in group.instance_states):
        refresh_load_balancers(group)


_original_update_auto_scaling_group = AutoScalingBackend.update_auto_scaling_group


def update_auto_scaling_group(self: AutoScalingBackend, name: str, *args: Any,
                              **kwargs: Any) -> Any:
    group = self.autoscaling_groups.get(name)
    if group is not None:
        min_size = kwargs.get("min_size")
        max_size = kwargs.get("max_size")
        desired = kwargs.get("desired_capacity")
        low = group.min_size if min_size is None else int(min_size)
        high = group.max_size if max_size is None else int(max_size)
        if low > high:
            raise ValidationError(
                f"Max bound, {high}, must be greater than or equal to min bound, {low}"
            )
        if desired is not None and not low <= int(desired) <= high:
            raise ValidationError(
                f"Desired capacity:{desired} must be between the specified min size:{low} "
                f"and max size:{high}"
            )
        if desired is None and (min_size is not None or max_size is not None):
            current = group.desired_capacity or 0
            if current < low or current > high:
                kwargs["desired_capacity"] = min(max(current, low), high)
    return _original_update_auto_scaling_group(self, name, *args, **kwargs)


def install() -> None:
    AutoScalingBackend.update_auto_scaling_group = update_auto_scaling_group
    AutoScalingBackend.update_attached_target_groups = update_attached_target_groups
    instances.RUNNING_HOOKS.append(_register_when_running)
    AutoScalingBackend.create_launch_configuration = create_launch_configuration
    AutoScalingBackend.delete_launch_configuration = delete_launch_configuration
    AutoScalingResponse.describe_auto_scaling_groups = describe_auto_scaling_groups
    LaunchTemplate.create_version = create_version
    FakeAutoScalingGroup._set_launch_configuration = _set_launch_configuration
    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances
    FakeAutoScalingGroup.active_instances = active_instances
    InstanceState.lifecycle_state = property(_get_lifecycle_state, _set_lifecycle_state)
    InstanceState.launch_template = property(_instance_launch_template)
    InstanceState.launch_configuration_name = property(_instance_launch_configuration_name)
