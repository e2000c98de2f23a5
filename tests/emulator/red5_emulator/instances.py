"""EC2 instances as AWS launches them: timing, volumes, idempotency, visibility.

Moto makes every instance ``running`` the moment it is launched and
``stopped`` the moment it is stopped, so a client's waits are never
exercised. Here RunInstances (and every Auto Scaling launch, which goes
through the same backend method) leaves instances ``pending`` until the
``instance_running`` delay has passed, and StopInstances leaves them
``stopping`` for ``instance_stop``.

Each instance carries a generation number that changes with every state
change, so a transition scheduled for an earlier state (a ``running`` due
after the instance was terminated, say) finds itself stale and does nothing.

Launches also follow AWS where moto does not:

- volumes come from the image: the root volume sits at the image's
  ``RootDeviceName`` and is made from its snapshot (moto always made an
  8 GiB ``/dev/sda1``); a block device mapping of the request, launch
  template or launch configuration overrides the image's mapping of the same
  device, and a ``VolumeSize`` smaller than the snapshot behind the device is
  ``InvalidBlockDeviceMapping``;
- a launch template's ``IamInstanceProfile``, ``MetadataOptions`` and
  ``Monitoring`` (and a launch configuration's instance profile) apply to
  the instance;
- DescribeInstances takes AWS's ``client-token`` filter (moto does not).
- ``ClientToken`` makes RunInstances idempotent: the same token with the
  same parameters returns the first reservation, with other parameters it is
  ``IdempotentParameterMismatch``, and a token is at most 64 characters;
- with the ``invisible_for_seconds`` fault switch set, a new instance is
  missing from DescribeInstances for that long (``InvalidInstanceID.NotFound``
  by id), as EC2's eventual consistency has it; other actions see it.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidInstanceIdError
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.responses.instances import InstanceResponse

from .state import EMULATOR, is_hidden


class IncorrectInstanceState(ServiceException):
    code = "IncorrectInstanceState"


class InvalidBlockDeviceMapping(ServiceException):
    code = "InvalidBlockDeviceMapping"


class InvalidSnapshotNotFound(ServiceException):
    code = "InvalidSnapshot.NotFound"


class IdempotentParameterMismatch(ServiceException):
    code = "IdempotentParameterMismatch"


class IdempotentInstanceTerminated(ServiceException):
    code = "IdempotentInstanceTerminated"


class InvalidParameterValue(ServiceException):
    code = "InvalidParameterValue"

# Called with each instance that has just become running; Auto Scaling uses
# this to register group instances with their target groups, which refuse
# targets that are not running.
RUNNING_HOOKS: list[Any] = []

PENDING = ("pending", 0)
RUNNING = ("running", 16)
STOPPING = ("stopping", 64)
STOPPED = ("stopped", 80)


def set_state(instance: Instance, state: tuple[str, int]) -> int:
    instance._state.name, instance._state.code = state
    generation = getattr(instance, "red5_generation", 0) + 1
    instance.red5_generation = generation
    # The SSM agent loses its connection on any state change and registers
    # again once the instance has been running for the agent delay.
    instance.red5_agent_online = False
    return generation


def begin_pending(instance: Instance) -> None:
    generation = set_state(instance, PENDING)
    EMULATOR.after("instance_running", _become_running, instance, generation)


def _become_running(instance: Instance, generation: int) -> None:
    if getattr(instance, "red5_generation", 0) != generation:
        return
    generation = set_state(instance, RUNNING)
    instance.red5_running_since = EMULATOR.now()
    EMULATOR.record_event("instance_running", instance.id)
    for hook in RUNNING_HOOKS:
        hook(instance)
    EMULATOR.after("ssm_agent", _agent_online, instance, generation)


def _agent_online(instance: Instance, generation: int) -> None:
    if getattr(instance, "red5_generation", 0) != generation:
        return
    instance.red5_agent_online = True
    instance.red5_agent_registered = True
    if has_instance_profile(instance):
        EMULATOR.record_event("ssm_agent_online", instance.id)


def _become_stopped(instance: Instance, generation: int) -> None:
    if getattr(instance, "red5_generation", 0) != generation:
        return
    set_state(instance, STOPPED)
    EMULATOR.record_event("instance_stopped", instance.id)


def has_instance_profile(instance: Instance) -> bool:
    """Whether the SSM agent on this instance can register with SSM.

    On AWS an instance without an instance profile that grants SSM access
    never shows up in DescribeInstanceInformation; the builder must be
    launched with one (the seed creates ``red5pro-sm-builder``).
    """
    if getattr(instance, "red5_instance_profile", False):
        return True
    associations = getattr(instance.ec2_backend, "iam_instance_profile_associations", {})
    return instance.id in associations


def _launch_template_has_profile(backend: Any, launch_template: dict[str, Any]) -> bool:
    try:
        version = backend._get_template_from_args(launch_template)
    except Exception:  # noqa: BLE001 - moto raises its own not-found errors later
        return False
    return bool(version.data.get("IamInstanceProfile"))


_original_run_instances = InstanceBackend.run_instances
_original_start_instances = InstanceBackend.start_instances
_original_stop_instances = InstanceBackend.stop_instances
_original_terminate_instances = InstanceBackend.terminate_instances


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _size(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidBlockDeviceMapping(f"The volume size {value!r} is not valid.")


def image_block_devices(backend: Any, image_id: str | None) -> list[dict[str, Any]]:
    """The block device mappings an instance of ``image_id`` starts from."""
    ami = backend.amis.get(image_id) if image_id else None
    if ami is None:
        # An image moto does not know (it accepts any id): moto's own default,
        # an 8 GiB root volume.
        return [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}]
    return copy.deepcopy(ami.block_device_mappings)


def _snapshot_size(backend: Any, snapshot_id: str) -> int:
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is None:
        raise InvalidSnapshotNotFound(f"The snapshot '{snapshot_id}' does not exist.")
    return int(snapshot.volume.size)


def effective_block_devices(backend: Any, image_id: str | None,
                            requested: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The volumes a launch creates: the image's mappings, overridden per
    device by the requested ones; refuses a volume smaller than its snapshot."""
    devices: dict[str, dict[str, Any]] = {}
    for mapping in image_block_devices(backend, image_id):
        ebs = {k: v for k, v in (mapping.get("Ebs") or {}).items() if v is not None}
        devices[mapping["DeviceName"]] = {"DeviceName": mapping["DeviceName"], "Ebs": ebs}
    for mapping in requested or []:
        name = mapping.get("DeviceName")
        if not name:
            continue
        no_device = mapping.get("NoDevice")
        if no_device is not None and no_device is not False and str(no_device).lower() != "false":
            devices.pop(name, None)
            continue
        ebs = {k: v for k, v in (mapping.get("Ebs") or {}).items() if v is not None}
        if mapping.get("VirtualName") and not ebs.get("VolumeSize") and not ebs.get("SnapshotId"):
            # An instance store volume: none of the emulated types has one.
            continue
        merged = dict(devices[name]["Ebs"]) if name in devices else {}
        merged.update(ebs)
        devices[name] = {"DeviceName": name, "Ebs": merged}
    result = []
    for name, mapping in devices.items():
        ebs = mapping["Ebs"]
        size = _size(ebs.get("VolumeSize"))
        snapshot_id = ebs.get("SnapshotId")
        if snapshot_id:
            snapshot_size = _snapshot_size(backend, snapshot_id)
            if size is not None and size < snapshot_size:
                raise InvalidBlockDeviceMapping(
                    f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', "
                    f"expect size >= {snapshot_size}GB"
                )
        ebs = dict(ebs)
        if size is not None:
            ebs["VolumeSize"] = size
        for flag in ("Encrypted", "DeleteOnTermination"):
            if flag in ebs:
                ebs[flag] = _truthy(ebs[flag])
        result.append({"DeviceName": name, "Ebs": ebs, "NoDevice": None})
    return result


def requested_block_devices(backend: Any, kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The block device mappings a launch asks for, as moto would pick them."""
    if "block_device_mappings" in kwargs:
        return kwargs["block_device_mappings"]
    if kwargs.get("launch_template"):
        version = backend._get_template_from_args(kwargs["launch_template"])
        return version.data.get("BlockDeviceMappings")
    if kwargs.get("launch_config") is not None:
        return kwargs["launch_config"].block_device_mapping_dict
    return None


def launch_image_id(backend: Any, image_id: str | None, kwargs: dict[str, Any]) -> str | None:
    if not image_id and kwargs.get("launch_template"):
        return backend._get_template_from_args(kwargs["launch_template"]).image_id
    return image_id


def check_launch(backend: Any, image_id: str | None, **kwargs: Any) -> list[dict[str, Any]]:
    """Raise what AWS would refuse a launch for; returns its volumes."""
    return effective_block_devices(
        backend, launch_image_id(backend, image_id, kwargs), requested_block_devices(backend, kwargs)
    )


def run_instances(self: Any, image_id: str, count: int, user_data: Any,
                  security_group_names: list[str], **kwargs: Any) -> Any:
    template_data: dict[str, Any] = {}
    if kwargs.get("launch_template"):
        template_data = self._get_template_from_args(kwargs["launch_template"]).data
        if not kwargs.get("metadata_options") and template_data.get("MetadataOptions"):
            kwargs["metadata_options"] = template_data["MetadataOptions"]
        if kwargs.get("monitoring_state", "disabled") == "disabled" and _truthy(
            (template_data.get("Monitoring") or {}).get("Enabled")
        ):
            kwargs["monitoring_state"] = "enabled"
    config = kwargs.get("launch_config")
    if config is not None and _truthy(getattr(config, "instance_monitoring_enabled", False)):
        kwargs["monitoring_state"] = "enabled"
    kwargs["block_device_mappings"] = check_launch(self, image_id, **kwargs)
    reservation = _original_run_instances(
        self, image_id, count, user_data, security_group_names, **kwargs
    )
    profile = bool(
        kwargs.get("iam_instance_profile_name")
        or kwargs.get("iam_instance_profile_arn")
        or (config is not None and getattr(config, "instance_profile_name", None))
        or (kwargs.get("launch_template")
            and _launch_template_has_profile(self, kwargs["launch_template"]))
    )
    inherited = None
    if not (kwargs.get("iam_instance_profile_name") or kwargs.get("iam_instance_profile_arn")):
        if template_data.get("IamInstanceProfile"):
            inherited = template_data["IamInstanceProfile"]
        elif config is not None and getattr(config, "instance_profile_name", None):
            name = config.instance_profile_name
            inherited = {"Arn": name} if name.startswith("arn:") else {"Name": name}
    visible_at = EMULATOR.invisible_until()
    for instance in reservation.instances:
        instance.red5_instance_profile = profile
        if inherited:
            _associate_profile(self, instance, inherited)
        if visible_at is not None:
            instance.red5_visible_at = visible_at
        begin_pending(instance)
    return reservation


def _associate_profile(backend: Any, instance: Instance, profile: dict[str, Any]) -> None:
    try:
        backend.associate_iam_instance_profile(
            instance_id=instance.id,
            iam_instance_profile_name=profile.get("Name"),
            iam_instance_profile_arn=profile.get("Arn"),
        )
    except Exception:  # noqa: BLE001 - an unknown profile: the instance runs without one
        pass


def start_instances(self: Any, instance_ids: list[str]) -> Any:
    for instance in self.get_multi_instances_by_id(instance_ids):
        if instance._state.name in ("terminated", "shutting-down"):
            raise IncorrectInstanceState(
                f"This instance '{instance.id}' is not in a state from which it can be started."
            )
    started = _original_start_instances(self, instance_ids)
    for instance, previous in started:
        if previous.name in ("stopped", "stopping"):
            begin_pending(instance)
        elif previous.name == "pending":
            # Moto's start() forced it to running; a pending instance keeps
            # waiting for the transition already scheduled.
            instance._state.name, instance._state.code = PENDING
    return started


def stop_instances(self: Any, instance_ids: list[str]) -> Any:
    # Moto would "stop" a terminated instance; AWS refuses.
    for instance in self.get_multi_instances_by_id(instance_ids):
        if instance._state.name in ("terminated", "shutting-down"):
            raise IncorrectInstanceState(
                f"This instance '{instance.id}' is not in a state from which it can be stopped."
            )
    stopped = _original_stop_instances(self, instance_ids)
    for instance, previous in stopped:
        if previous.name in ("running", "pending"):
            generation = set_state(instance, STOPPING)
            EMULATOR.after("instance_stop", _become_stopped, instance, generation)
        elif previous.name == "stopping":
            instance._state.name, instance._state.code = STOPPING
    return stopped


def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
    terminated = _original_terminate_instances(self, instance_ids)
    for instance, _ in terminated:
        # Invalidate every pending transition of the instance.
        instance.red5_generation = getattr(instance, "red5_generation", 0) + 1
        instance.red5_agent_online = False
    return terminated


# -- RunInstances idempotency and DescribeInstances visibility ---------------------

# (account, region, client token) -> (the request's parameters, reservation id)
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[tuple[tuple[str, str], ...], str]] = {}

# Parameters that do not make a retry different: the token itself, and the
# Availability Zone (AWS's RunInstances idempotency ignores it).
_NOT_COMPARED = ("Action", "Version", "ClientToken", "DryRun", "Placement.AvailabilityZone")

_original_run_instances_response = InstanceResponse.run_instances
_original_describe_instances_response = InstanceResponse.describe_instances


def request_parameters(response: Any, ignored: tuple[str, ...] = _NOT_COMPARED,
                       ) -> tuple[tuple[str, str], ...]:
    """What makes a request with a client token the same request again: its parameters,
    less `ignored`."""
    return tuple(sorted(
        (key, "\x1f".join(str(v) for v in values))
        for key, values in response.querystring.items()
        if key not in ignored
    ))


def run_instances_response(self: InstanceResponse) -> ActionResult:
    token = self._get_param("ClientToken")
    if token is None or self._get_param("DryRun"):
        return _original_run_instances_response(self)
    if len(token) > 64:
        raise InvalidParameterValue(
            f"Value ({token}) for parameter clientToken is invalid. "
            "The client token must be at most 64 characters long."
        )
    key = (self.current_account, self.region, token)
    parameters = request_parameters(self)
    known = CLIENT_TOKENS.get(key)
    if known is not None:
        if known[0] != parameters:
            raise IdempotentParameterMismatch(
                "Arguments on this idempotent request are inconsistent with arguments used "
                "in previous request(s)."
            )
        reservation = self.ec2_backend.reservations.get(known[1])
        if reservation is not None:
            if all(i._state.name == "terminated" for i in reservation.instances):
                raise IdempotentInstanceTerminated(
                    "The client token you have provided is associated with a terminated "
                    "instance. Please use a different client token."
                )
            return ActionResult(reservation)
    result = _original_run_instances_response(self)
    CLIENT_TOKENS[key] = (parameters, result.result.id)
    return result


def _take_client_token_filter(response: InstanceResponse) -> list[str] | None:
    """Takes the ``client-token`` filter, which moto does not know, out of this request's
    filters and returns its values (None when the request has none)."""
    filters = response._filters_from_querystring()
    tokens = filters.pop("client-token", None)
    if tokens is None:
        return None
    response._filters_from_querystring = lambda: dict(filters)  # type: ignore[method-assign]
    return list(tokens)


def describe_instances_response(self: InstanceResponse) -> ActionResult:
    tokens = _take_client_token_filter(self)
    if tokens is not None:
        # AWS's ``client-token`` filter: the instances launched with one of these tokens.
        reservations = {
            CLIENT_TOKENS[key][1]
            for key in CLIENT_TOKENS
            if key[:2] == (self.current_account, self.region) and key[2] in tokens
        }
        result = describe_instances_response(self)
        result.result["Reservations"] = [
            r for r in result.result["Reservations"] if r.id in reservations
        ]
        return result
    hidden = {i.id for i in self.ec2_backend.all_instances() if is_hidden(i)}
    if not hidden:
        return _original_describe_instances_response(self)
    asked = [i for i in self._get_param("InstanceIds", []) if i in hidden]
    if asked:
        raise InvalidInstanceIdError(asked)
    result = _original_describe_instances_response(self)
    reservations = []
    for reservation in result.result["Reservations"]:
        visible = [i for i in reservation.instances if i.id not in hidden]
        if visible:
            shown = copy.copy(reservation)
            shown.instances = visible
            reservations.append(shown)
    result.result["Reservations"] = reservations
    return result


def install() -> None:
    InstanceResponse.run_instances = run_instances_response
    InstanceResponse.describe_instances = describe_instances_response
    EMULATOR.reset_hooks.append(CLIENT_TOKENS.clear)
    InstanceBackend.run_instances = run_instances
    InstanceBackend.start_instances = start_instances
    InstanceBackend.stop_instances = stop_instances
    InstanceBackend.terminate_instances = terminate_instances
