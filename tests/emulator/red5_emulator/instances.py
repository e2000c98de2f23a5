"""EC2 instance lifecycle with AWS's timing: pending, running, stopping, stopped.

Moto makes every instance ``running`` the moment it is launched and
``stopped`` the moment it is stopped, so a client's waits are never
exercised. Here RunInstances (and every Auto Scaling launch, which goes
through the same backend method) leaves instances ``pending`` until the
``instance_running`` delay has passed, and StopInstances leaves them
``stopping`` for ``instance_stop``.

Each instance carries a generation number that changes with every state
change, so a transition scheduled for an earlier state (a ``running`` due
after the instance was terminated, say) finds itself stale and does nothing.
"""

from __future__ import annotations

from typing import Any

from moto.core.exceptions import ServiceException
from moto.ec2.models.instances import Instance, InstanceBackend

from .state import EMULATOR


class IncorrectInstanceState(ServiceException):
    code = "IncorrectInstanceState"

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


def run_instances(self: Any, image_id: str, count: int, user_data: Any,
                  security_group_names: list[str], **kwargs: Any) -> Any:
    reservation = _original_run_instances(
        self, image_id, count, user_data, security_group_names, **kwargs
    )
    profile = bool(
        kwargs.get("iam_instance_profile_name")
        or kwargs.get("iam_instance_profile_arn")
        or (kwargs.get("launch_config") is not None
            and getattr(kwargs["launch_config"], "instance_profile_name", None))
        or (kwargs.get("launch_template")
            and _launch_template_has_profile(self, kwargs["launch_template"]))
    )
    for instance in reservation.instances:
        instance.red5_instance_profile = profile
        begin_pending(instance)
    return reservation


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


def install() -> None:
    InstanceBackend.run_instances = run_instances
    InstanceBackend.start_instances = start_instances
    InstanceBackend.stop_instances = stop_instances
    InstanceBackend.terminate_instances = terminate_instances
