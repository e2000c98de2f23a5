"""Instance refreshes for Auto Scaling groups, which moto does not implement.

StartInstanceRefresh, DescribeInstanceRefreshes, CancelInstanceRefresh and
RollbackInstanceRefresh behave as the AWS API reference describes them:

- one active refresh per group (``InstanceRefreshInProgress`` otherwise);
  Cancel and Rollback answer ``ActiveInstanceRefreshNotFound`` without one;
- Preferences are validated and defaulted like AWS (MinHealthyPercentage 90,
  MaxHealthyPercentage 100-200 and at most 100 above the minimum,
  AutoRollback only with a DesiredConfiguration launch template at a
  numbered version and a group that is not on ``$Latest`` or ``$Default``,
  SkipMatching not against a launch configuration, InstanceWarmup falling
  back to the group's health check grace period);
- instances protected from scale in (``ScaleInProtectedInstances``) and in
  Standby (``StandbyInstances``) are replaced (``Refresh``; Standby ones
  ``Terminate``d without a replacement), skipped (``Ignore``) or waited for
  (``Wait``, the default: the refresh fails after one hour);
- ``CheckpointPercentages`` pace the replacements so each checkpoint is hit,
  pause for ``CheckpointDelay`` (default 3600 s) at each one, and a last
  checkpoint below 100 ends the refresh there;
- a replacement that cannot launch (a volume smaller than its snapshot)
  fails the refresh, or rolls it back with AutoRollback;
- the refresh is ``Pending`` briefly, then ``InProgress``, and really
  replaces the group's instances in batches that keep the minimum healthy
  percentage (and, with a maximum above 100, launch new instances before
  terminating old ones); each batch waits until its new instances run and
  the warm-up has passed;
- with a DesiredConfiguration, new instances use it and the group is moved
  to it only when the refresh succeeds; without one they use the group's
  current launch template or launch configuration;
- the ``refresh_fail_at_percent`` fault makes a refresh fail once it has
  replaced that share of instances: with AutoRollback it goes
  ``RollbackInProgress`` and replaces the new instances back, ending
  ``RollbackSuccessful``; without it, ``Failed``;
- Cancel goes ``Cancelling`` until the batch in flight is done, then
  ``Cancelled``; replaced instances stay. Rollback replaces what was
  replaced so far and ends ``RollbackSuccessful``.

A background ticker drives every refresh, so one progresses whether or not a
client polls it.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from moto.autoscaling import autoscaling_backends
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.core.utils import utcnow

from . import autoscaling as groups
from .state import EMULATOR

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")

# How long a refresh told to Wait waits for protected or Standby instances
# before it fails, in emulated seconds (one hour, as on AWS).
BLOCKED_WAIT = 3600.0


class InstanceRefreshInProgress(ServiceException):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(ServiceException):
    code = "ActiveInstanceRefreshNotFound"


class IrreversibleInstanceRefresh(ServiceException):
    code = "IrreversibleInstanceRefresh"


class Pass:
    """One sweep over a set of instances, replacing each with ``spec``."""

    def __init__(self, kind: str, instance_ids: list[str], spec: dict[str, Any], capacity: int):
        # "forward" replaces old instances with the target configuration,
        # "rollback" replaces the new ones with the previous configuration.
        self.kind = kind
        self.spec = spec
        # The group's capacity when the pass started: the base of the
        # minimum and maximum healthy percentages.
        self.capacity = capacity
        self.queue = list(instance_ids)
        self.total = len(instance_ids)
        self.done = 0
        # The batch in flight: old instances being replaced, the new ones,
        # the old ones kept until the new ones are warm, and when the
        # warm-up ends.
        self.batch: dict[str, Any] | None = None

    @property
    def percentage(self) -> int:
        if self.total == 0:
            return 100
        return self.done * 100 // self.total

    @property
    def remaining(self) -> int:
        return self.total - self.done


class Refresh:
    def __init__(self, backend: Any, group: Any, preferences: dict[str, Any],
                 reported_preferences: dict[str, Any], desired: dict[str, Any] | None,
                 target: dict[str, Any], previous: dict[str, Any], warmup: float):
        self.id = str(uuid.uuid4())
        self.account_id = backend.account_id
        self.region = backend.region_name
        self.group_name = group.name
        self.status = "Pending"
        self.status_reason: str | None = None
        self.start_time = utcnow()
        self.end_time = None
        self.preferences = preferences
        self.reported_preferences = reported_preferences
        self.desired = desired
        self.target = target
        self.previous = previous
        self.warmup = warmup
        self.pending_until = EMULATOR.now() + EMULATOR.delay("refresh_pending")
        self.bake_until: float | None = None
        self.cancel_requested = False
        self.rollback_details: dict[str, Any] | None = None
        self.launched: list[str] = []
        self.current: Pass | None = None
        self.forward_percentage = 0
        self.forward_remaining: int | None = None
        # Checkpoints still ahead of the forward pass, and when the pause at
        # the one just reached ends.
        self.checkpoints: list[int] = list(preferences.get("CheckpointPercentages") or [])
        self.checkpoint_until: float | None = None
        # When waiting for protected or Standby instances fails the refresh.
        self.blocked_until: float | None = None

    # -- reporting ----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        if self.current is not None:
            percentage, remaining = self.current.percentage, self.current.remaining
        elif self.status in ("Successful", "RollbackSuccessful", "Baking"):
            percentage, remaining = 100, 0
        else:
            percentage, remaining = self.forward_percentage, self.forward_remaining
        result: dict[str, Any] = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group_name,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": percentage,
            "InstancesToUpdate": remaining if remaining is not None else 0,
            "ProgressDetails": {
                "LivePoolProgress": {
                    "PercentageComplete": percentage,
                    "InstancesToUpdate": remaining if remaining is not None else 0,
                }
            },
            "Preferences": self.reported_preferences,
            "Strategy": "Rolling",
        }
        if self.status_reason:
            result["StatusReason"] = self.status_reason
        if self.end_time is not None:
            result["EndTime"] = self.end_time
        if self.desired is not None:
            result["DesiredConfiguration"] = self.desired
        if self.rollback_details is not None:
            result["RollbackDetails"] = self.rollback_details
        return result

    # -- driving ------------------------------------------------------------

    def group(self) -> Any | None:
        backend = autoscaling_backends[self.account_id][self.region]
        return backend.autoscaling_groups.get(self.group_name)

    def advance(self, now: float) -> None:
        """Take every step that is due; called on each tick of the clock."""
        group = self.group()
        if group is None:
            self._finish("Failed", "The Auto Scaling group was deleted during the instance refresh.")
            return
        if self.status == "Pending":
            if now < self.pending_until:
                return
            self.status = "InProgress"
            self._start_pass("forward", group, self._forward_candidates(group), self.target)
        if self.status == "Baking":
            if now >= (self.bake_until or 0):
                self._succeed(group)
            return
        # A batch can finish and the next one start within the same tick.
        for _ in range(1000):
            if self.status not in ACTIVE or self.current is None:
                return
            if not self._step(group, now):
                return

    def _forward_candidates(self, group: Any) -> list[str]:
        ids = []
        for state in group.instance_states:
            if state.stored_lifecycle_state not in ("InService", "Standby"):
                continue
            spec = getattr(state.instance, "red5_launch_spec", None)
            if self.preferences["SkipMatching"] and groups.same_config(spec, self.target):
                continue
            if state.protected_from_scale_in and self.preferences["ScaleInProtectedInstances"] == "Ignore":
                continue
            if state.stored_lifecycle_state == "Standby" and self.preferences["StandbyInstances"] == "Ignore":
                continue
            ids.append(state.instance.id)
        return ids

    @staticmethod
    def _in_standby(group: Any, instance_id: str) -> bool:
        return any(
            s.instance.id == instance_id and s.stored_lifecycle_state == "Standby"
            for s in group.instance_states
        )

    def _blocker(self, group: Any, instance_id: str) -> str | None:
        """Why the forward pass may not replace this instance yet, or None."""
        state = next((s for s in group.instance_states if s.instance.id == instance_id), None)
        if state is None:
            return None
        if state.protected_from_scale_in and self.preferences["ScaleInProtectedInstances"] == "Wait":
            return "is protected from scale in"
        if state.stored_lifecycle_state == "Standby" and self.preferences["StandbyInstances"] == "Wait":
            return "is in Standby"
        return None

    def _start_pass(self, kind: str, group: Any, instance_ids: list[str],
                    spec: dict[str, Any], capacity: int | None = None) -> None:
        if capacity is None:
            capacity = max(len(group.instance_states), group.desired_capacity or 0)
        self.current = Pass(kind, instance_ids, spec, capacity)

    def _batch_shape(self, capacity: int) -> tuple[int, int]:
        """How many instances the next batch replaces, and how many of those
        are launched before their old instance is terminated."""
        minimum = self.preferences["MinHealthyPercentage"]
        maximum = self.preferences.get("MaxHealthyPercentage") or 100
        floor_healthy = math.ceil(capacity * minimum / 100)
        ceiling = capacity
        if maximum > 100:
            ceiling = max(capacity + 1, math.floor(capacity * maximum / 100))
        size = max(1, ceiling - floor_healthy)
        extra = min(size, ceiling - capacity)
        return size, extra

    def _step(self, group: Any, now: float) -> bool:
        """Move the current pass on by one step; False when it must wait."""
        current = self.current
        assert current is not None
        if current.batch is None:
            if self.cancel_requested:
                self._finish("Cancelled", "The instance refresh was cancelled.")
                return False
            if self._fault_fires(group):
                return True
            present = {s.instance.id for s in group.instance_states}
            current.queue = [i for i in current.queue if i in present]
            # Instances that left the group on their own count as replaced.
            current.done = current.total - len(current.queue)
            if not current.queue:
                self._finish_pass(group)
                return True
            if self.checkpoint_until is not None:
                if now < self.checkpoint_until:
                    return False
                self.checkpoint_until = None
                self._report_wait(None)
            ready = current.queue
            if current.kind == "forward":
                ready = [i for i in current.queue if self._blocker(group, i) is None]
                if not ready:
                    return self._wait_for_blocked(group, now)
                self.blocked_until = None
                standby = [i for i in ready if self._in_standby(group, i)]
                if standby:
                    # StandbyInstances=Terminate: Standby instances do not count
                    # towards the capacity, so they go without a replacement.
                    groups.terminate_instances(group, standby)
                    return True
            size, extra = self._batch_shape(current.capacity)
            size = min(size, len(ready), self._checkpoint_cap(current))
            extra = min(extra, size)
            olds = ready[:size]
            early = olds[: size - extra]
            late = olds[size - extra:]
            try:
                groups.check_launch(group, current.spec)
            except ServiceException as error:
                self._launch_failed(group, error)
                return True
            groups.terminate_instances(group, early)
            try:
                new = groups.launch_instances(group, size, current.spec)
            except ServiceException as error:
                self._launch_failed(group, error)
                return True
            new_ids = [i.id for i in new]
            self.launched.extend(new_ids)
            groups.refresh_load_balancers(group)
            current.batch = {"olds": olds, "late": late, "new": new_ids, "warm_until": None}
            self._report_wait(f"Waiting for instances to launch. For example: {new_ids[0]} is pending.")
            return True
        batch = current.batch
        if batch["warm_until"] is None:
            ec2 = group.autoscaling_backend.ec2_backend
            states = [
                ec2.get_instance_by_id(i)._state.name
                for i in batch["new"]
                if ec2.get_instance_by_id(i) is not None
            ]
            if any(s == "pending" for s in states):
                return False
            batch["warm_until"] = now + EMULATOR.real_seconds(self.warmup)
            self._report_wait(
                "Waiting for instances to warm up before continuing. "
                f"For example: {batch['new'][0]} is warming up."
            )
        if now < batch["warm_until"]:
            return False
        groups.terminate_instances(group, [i for i in batch["late"] if self._in_group(group, i)])
        current.queue = [i for i in current.queue if i not in batch["olds"]]
        current.done = current.total - len(current.queue)
        current.batch = None
        self._report_wait(None)
        if current.kind == "forward":
            self._reach_checkpoint(group, now)
        return True

    # -- checkpoints, waits and launch failures -------------------------------

    def _checkpoint_cap(self, current: Pass) -> int:
        """How many instances the next batch may replace without passing the
        next checkpoint (AWS paces replacements to land on each one)."""
        if current.kind != "forward" or not self.checkpoints or current.total == 0:
            return current.total or 1
        goal = math.ceil(current.total * self.checkpoints[0] / 100)
        return max(1, goal - current.done)

    def _reach_checkpoint(self, group: Any, now: float) -> None:
        current = self.current
        assert current is not None
        reached = [c for c in self.checkpoints if current.percentage >= c]
        if not reached:
            return
        # A batch may pass several checkpoints at once: only the highest counts.
        checkpoint = reached[-1]
        self.checkpoints = [c for c in self.checkpoints if c > checkpoint]
        if not self.checkpoints:
            if checkpoint < 100:
                # The last checkpoint below 100 ends the refresh there: the
                # remaining instances keep the old configuration.
                current.queue = []
                self._finish_pass(group)
            return
        delay = self.preferences["CheckpointDelay"]
        if delay <= 0:
            return
        self.checkpoint_until = now + EMULATOR.real_seconds(delay)
        self._report_wait(
            f"Checkpoint {checkpoint}% reached: {current.percentage}% of the instances are "
            f"replaced. Waiting {delay} seconds (CheckpointDelay) before continuing."
        )

    def _wait_for_blocked(self, group: Any, now: float) -> bool:
        """Every instance left is protected or in Standby and the refresh was
        told to wait: wait one hour for them, then fail."""
        current = self.current
        assert current is not None
        first = current.queue[0]
        why = self._blocker(group, first)
        if self.blocked_until is None:
            self.blocked_until = now + EMULATOR.real_seconds(BLOCKED_WAIT)
        if now < self.blocked_until:
            self._report_wait(
                "Waiting for instances that are protected from scale in or in Standby. "
                f"For example: {first} {why}."
            )
            return False
        self.blocked_until = None
        reason = (
            f"The instance refresh failed: instances were still protected from scale in or in "
            f"Standby after waiting one hour. For example: {first} {why}."
        )
        self._remember_forward_progress()
        if self.preferences["AutoRollback"]:
            self._begin_rollback(group, reason)
        else:
            self._finish("Failed", reason)
        return True

    def _launch_failed(self, group: Any, error: ServiceException) -> None:
        current = self.current
        assert current is not None
        reason = (
            "The instance refresh failed because a new instance failed to launch: "
            f"{error.message}. Launching EC2 instance failed."
        )
        if current.kind == "rollback":
            self._finish("RollbackFailed", reason)
            return
        self._remember_forward_progress()
        if self.status == "InProgress" and self.preferences["AutoRollback"]:
            self._begin_rollback(group, reason)
        else:
            self._finish("Failed", reason)

    def _report_wait(self, message: str | None) -> None:
        # Only a refresh moving forward reports what it waits for; a rollback
        # or a cancellation keeps the reason it was given.
        if self.status == "InProgress":
            self.status_reason = message

    @staticmethod
    def _in_group(group: Any, instance_id: str) -> bool:
        return any(s.instance.id == instance_id for s in group.instance_states)

    def _fault_fires(self, group: Any) -> bool:
        if self.status != "InProgress":
            return False
        threshold = EMULATOR.faults.get("refresh_fail_at_percent")
        current = self.current
        assert current is not None
        if threshold is None or current.percentage < threshold:
            return False
        EMULATOR.take_fault("refresh_fail_at_percent")
        reason = (
            f"The instance refresh failed at {current.percentage}% complete: "
            "replacement instances failed their health checks."
        )
        self._remember_forward_progress()
        if self.preferences["AutoRollback"]:
            self._begin_rollback(group, reason)
        else:
            self._finish("Failed", reason)
        return True

    def _finish_pass(self, group: Any) -> None:
        if self.status == "InProgress":
            self.forward_percentage = 100
            self.forward_remaining = 0
            bake = self.preferences.get("BakeTime") or 0
            if bake > 0:
                self.current = None
                self.status = "Baking"
                self.bake_until = EMULATOR.now() + EMULATOR.real_seconds(bake)
                self.status_reason = "Baking: waiting for the bake time to pass."
                return
            self._succeed(group)
        elif self.status == "RollbackInProgress":
            self._finish("RollbackSuccessful", self.status_reason_on_rollback())
        elif self.status == "Cancelling":
            self._finish("Cancelled", "The instance refresh was cancelled.")

    def status_reason_on_rollback(self) -> str:
        reason = (self.rollback_details or {}).get("RollbackReason")
        return f"Rollback completed. {reason}" if reason else "Rollback completed."

    def _succeed(self, group: Any) -> None:
        if self.desired is not None:
            groups.apply_spec(group, self.target)
        self._finish("Successful", None)

    def _finish(self, status: str, reason: str | None) -> None:
        self._remember_forward_progress()
        self.current = None
        self.status = status
        self.status_reason = reason
        self.end_time = utcnow()
        EMULATOR.record_event(
            "refresh_terminal", self.id, status=status, group=self.group_name
        )

    # -- requests -----------------------------------------------------------

    def request_cancel(self) -> None:
        self.cancel_requested = True
        if self.status in ("Pending", "Baking") or self.current is None:
            self.status = "Cancelling"
            self._finish("Cancelled", "The instance refresh was cancelled.")
            return
        self.status = "Cancelling"
        self.status_reason = "Waiting for the instances being replaced to finish."

    def _begin_rollback(self, group: Any, reason: str) -> None:
        current = self.current
        self.rollback_details = {
            "RollbackReason": reason,
            "RollbackStartTime": utcnow(),
            "PercentageCompleteOnRollback": self.forward_percentage,
            "InstancesToUpdateOnRollback": self.forward_remaining or 0,
        }
        self.rollback_details["ProgressDetailsOnRollback"] = {
            "LivePoolProgress": {
                "PercentageComplete": self.rollback_details["PercentageCompleteOnRollback"],
                "InstancesToUpdate": self.rollback_details["InstancesToUpdateOnRollback"],
            }
        }
        self.checkpoint_until = None
        self.blocked_until = None
        capacity = current.capacity if current else len(group.instance_states)
        present = [s.instance.id for s in group.instance_states]
        launched = [i for i in self.launched if i in present]
        # A batch in flight may have left the group above its capacity: drop
        # the newest instances first, then replace the rest.
        surplus = min(len(launched), max(0, len(present) - capacity))
        keep = len(launched) - surplus
        groups.terminate_instances(group, launched[keep:])
        self.status = "RollbackInProgress"
        self._start_pass("rollback", group, launched[:keep], self.previous, capacity)
        self.status_reason = reason

    def _remember_forward_progress(self) -> None:
        if self.current is not None and self.current.kind == "forward":
            self.forward_percentage = self.current.percentage
            self.forward_remaining = self.current.remaining

    def request_rollback(self, group: Any) -> None:
        self._remember_forward_progress()
        self._begin_rollback(group, "Rollback requested by RollbackInstanceRefresh.")


class Registry:
    def __init__(self) -> None:
        self.by_group: dict[tuple[str, str, str], list[Refresh]] = {}

    def refreshes(self, account: str, region: str, group_name: str) -> list[Refresh]:
        return self.by_group.setdefault((account, region, group_name), [])

    def active(self, account: str, region: str, group_name: str) -> Refresh | None:
        for refresh in self.refreshes(account, region, group_name):
            if refresh.status in ACTIVE:
                return refresh
        return None

    def tick(self, now: float) -> None:
        for refreshes in list(self.by_group.values()):
            for refresh in refreshes:
                if refresh.status in ACTIVE:
                    refresh.advance(now)

    def reset(self) -> None:
        self.by_group.clear()


REGISTRY = Registry()


# -- request parsing -------------------------------------------------------------

def _int_pref(preferences: dict[str, Any], key: str) -> int | None:
    value = preferences.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{key} must be an integer")


def _bool_pref(preferences: dict[str, Any], key: str) -> bool | None:
    value = preferences.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def parse_preferences(raw: dict[str, Any], group: Any) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Validate Preferences; returns (effective, as reported, warm-up seconds)."""
    minimum = _int_pref(raw, "MinHealthyPercentage")
    maximum = _int_pref(raw, "MaxHealthyPercentage")
    warmup = _int_pref(raw, "InstanceWarmup")
    checkpoint_delay = _int_pref(raw, "CheckpointDelay")
    bake_time = _int_pref(raw, "BakeTime")
    checkpoints = [int(p) for p in raw.get("CheckpointPercentages") or []]
    if minimum is not None and not 0 <= minimum <= 100:
        raise ValidationError("MinHealthyPercentage must be between 0 and 100.")
    if maximum is not None:
        if minimum is None:
            raise ValidationError(
                "You must specify MinHealthyPercentage when you specify MaxHealthyPercentage."
            )
        if not 100 <= maximum <= 200:
            raise ValidationError("MaxHealthyPercentage must be between 100 and 200.")
        if maximum - minimum > 100:
            raise ValidationError(
                "The difference between MaxHealthyPercentage and MinHealthyPercentage "
                "cannot be greater than 100."
            )
        if minimum == 100 and maximum == 100:
            raise ValidationError(
                "MinHealthyPercentage and MaxHealthyPercentage cannot both be 100."
            )
    if warmup is not None and warmup < 0:
        raise ValidationError("InstanceWarmup must not be negative.")
    if checkpoint_delay is not None and not checkpoints:
        raise ValidationError(
            "CheckpointDelay can only be specified together with CheckpointPercentages."
        )
    if checkpoints and (
        checkpoints != sorted(checkpoints)
        or len(set(checkpoints)) != len(checkpoints)
        or any(not 1 <= p <= 100 for p in checkpoints)
    ):
        raise ValidationError(
            "CheckpointPercentages must be unique and in ascending order, each between 1 and 100."
        )
    if checkpoint_delay is not None and not 0 <= checkpoint_delay <= 172800:
        raise ValidationError("CheckpointDelay must be between 0 and 172800.")
    if bake_time is not None and not 0 <= bake_time <= 172800:
        raise ValidationError("BakeTime must be between 0 and 172800.")
    for key in ("ScaleInProtectedInstances", "StandbyInstances"):
        allowed = ("Refresh", "Ignore", "Wait") if key == "ScaleInProtectedInstances" else (
            "Terminate", "Ignore", "Wait")
        if raw.get(key) is not None and raw[key] not in allowed:
            raise ValidationError(f"{key} must be one of {', '.join(allowed)}.")

    effective = {
        "MinHealthyPercentage": 90 if minimum is None else minimum,
        "MaxHealthyPercentage": maximum,
        "SkipMatching": bool(_bool_pref(raw, "SkipMatching")),
        "AutoRollback": bool(_bool_pref(raw, "AutoRollback")),
        "BakeTime": bake_time,
        "CheckpointPercentages": checkpoints,
        "CheckpointDelay": 3600 if checkpoint_delay is None else checkpoint_delay,
        "ScaleInProtectedInstances": raw.get("ScaleInProtectedInstances") or "Wait",
        "StandbyInstances": raw.get("StandbyInstances") or "Wait",
    }
    reported: dict[str, Any] = {
        "MinHealthyPercentage": effective["MinHealthyPercentage"],
        "SkipMatching": effective["SkipMatching"],
        "AutoRollback": effective["AutoRollback"],
        "ScaleInProtectedInstances": effective["ScaleInProtectedInstances"],
        "StandbyInstances": effective["StandbyInstances"],
    }
    if maximum is not None:
        reported["MaxHealthyPercentage"] = maximum
    if warmup is not None:
        reported["InstanceWarmup"] = warmup
    if checkpoints:
        reported["CheckpointPercentages"] = checkpoints
        reported["CheckpointDelay"] = effective["CheckpointDelay"]
    if bake_time is not None:
        reported["BakeTime"] = bake_time
    if raw.get("AlarmSpecification"):
        reported["AlarmSpecification"] = raw["AlarmSpecification"]
    # AWS falls back to the group's default instance warm-up (which moto
    # does not model) and then to its health check grace period.
    if warmup is None:
        warmup = group.health_check_grace_period or 0
    return effective, reported, float(warmup)


def parse_desired(raw: dict[str, Any] | None, ec2_backend: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Validate DesiredConfiguration; returns (as reported, launch spec)."""
    if not raw:
        return None, None
    if raw.get("MixedInstancesPolicy"):
        raise ValidationError(
            "A DesiredConfiguration with a MixedInstancesPolicy is not supported here; "
            "use a LaunchTemplate."
        )
    template_raw = raw.get("LaunchTemplate")
    if not template_raw:
        raise ValidationError("DesiredConfiguration must contain a LaunchTemplate.")
    template = groups.find_template(
        ec2_backend, template_raw.get("LaunchTemplateId"), template_raw.get("LaunchTemplateName")
    )
    version = template_raw.get("Version")
    number = groups.resolve_version(template, version)
    reported_template = {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name}
    if version:
        reported_template["Version"] = str(version)
    spec = {
        "kind": "template",
        "id": template.id,
        "name": template.name,
        "version": str(version) if version else None,
        "number": number,
    }
    return {"LaunchTemplate": reported_template}, spec


def _is_numbered(version: str | None) -> bool:
    return bool(version) and str(version).isdigit()


def _unnumbered_template(spec: dict[str, Any]) -> bool:
    """Whether a group spec is a launch template at $Latest or $Default."""
    return spec["kind"] == "template" and not _is_numbered(spec.get("version"))


# -- response handlers ----------------------------------------------------------

def _group_or_error(self: AutoScalingResponse, name: str | None) -> Any:
    if not name:
        raise ValidationError("AutoScalingGroupName is required.")
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def start_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    backend = self.autoscaling_backend
    group = _group_or_error(self, self._get_param("AutoScalingGroupName"))
    strategy = self._get_param("Strategy") or "Rolling"
    if strategy != "Rolling":
        raise ValidationError(f"Strategy {strategy} is not valid; the only strategy is Rolling.")
    if REGISTRY.active(backend.account_id, backend.region_name, group.name) is not None:
        raise InstanceRefreshInProgress(
            "An Instance Refresh is already in progress and blocks the execution of this "
            "Instance Refresh."
        )
    preferences, reported, warmup = parse_preferences(
        self._get_param("Preferences") or {}, group
    )
    desired, desired_spec = parse_desired(
        self._get_param("DesiredConfiguration"), backend.ec2_backend
    )
    previous = groups.group_spec(group)
    if preferences["AutoRollback"]:
        if desired_spec is None:
            raise ValidationError(
                "The request isn't valid. The AutoRollback parameter cannot be set to true "
                "when the DesiredConfiguration parameter is empty. Set AutoRollback to false "
                "or specify a desired configuration and try again."
            )
        if not _is_numbered(desired_spec["version"]):
            raise ValidationError(
                "The request isn't valid. The AutoRollback parameter cannot be set to true "
                "when the DesiredConfiguration uses the $Latest or $Default version of a launch "
                "template. Specify a version number and try again."
            )
        if _unnumbered_template(previous):
            raise ValidationError(
                "The request isn't valid. The AutoRollback parameter cannot be set to true "
                "when the Auto Scaling group uses the $Latest or $Default version of a launch "
                "template. Set the group to a version number or set AutoRollback to false "
                "and try again."
            )
    target = desired_spec or previous
    if preferences["SkipMatching"] and target["kind"] == "configuration":
        raise ValidationError(
            "The request isn't valid. SkipMatching is not supported when the desired "
            "configuration is a launch configuration. Set SkipMatching to false and try again."
        )
    refresh = Refresh(backend, group, preferences, reported, desired, target, previous, warmup)
    refresh.forward_remaining = len(refresh._forward_candidates(group))
    REGISTRY.refreshes(backend.account_id, backend.region_name, group.name).insert(0, refresh)
    return ActionResult({"InstanceRefreshId": refresh.id})


def describe_instance_refreshes(self: AutoScalingResponse) -> ActionResult:
    backend = self.autoscaling_backend
    name = self._get_param("AutoScalingGroupName")
    if not name:
        raise ValidationError("AutoScalingGroupName is required.")
    wanted = self._get_param("InstanceRefreshIds") or []
    max_records = self._get_int_param("MaxRecords") or 50
    if not 1 <= max_records <= 100:
        raise ValidationError("MaxRecords must be between 1 and 100.")
    refreshes = [
        r for r in REGISTRY.refreshes(backend.account_id, backend.region_name, name)
        if not wanted or r.id in wanted
    ]
    token = self._get_param("NextToken")
    start = 0
    if token:
        if not token.isdigit():
            raise ServiceException("InvalidNextToken", "The token is not valid.")
        start = int(token)
    page = refreshes[start:start + max_records]
    result: dict[str, Any] = {"InstanceRefreshes": [r.describe() for r in page]}
    if start + max_records < len(refreshes):
        result["NextToken"] = str(start + max_records)
    return ActionResult(result)


def cancel_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    backend = self.autoscaling_backend
    group = _group_or_error(self, self._get_param("AutoScalingGroupName"))
    refresh = REGISTRY.active(backend.account_id, backend.region_name, group.name)
    if refresh is None or refresh.status == "Cancelling":
        raise ActiveInstanceRefreshNotFound(
            "No in progress or pending Instance Refresh found for Auto Scaling group "
            f"{group.name}"
        )
    refresh.request_cancel()
    return ActionResult({"InstanceRefreshId": refresh.id})


def rollback_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    backend = self.autoscaling_backend
    group = _group_or_error(self, self._get_param("AutoScalingGroupName"))
    refresh = REGISTRY.active(backend.account_id, backend.region_name, group.name)
    if refresh is None or refresh.status not in ("Pending", "InProgress", "Baking"):
        raise ActiveInstanceRefreshNotFound(
            "No in progress or pending Instance Refresh found for Auto Scaling group "
            f"{group.name}"
        )
    if refresh.desired is None or not _is_numbered(refresh.target.get("version")):
        raise IrreversibleInstanceRefresh(
            "The instance refresh cannot be rolled back: it has no DesiredConfiguration "
            "with a launch template at a numbered version."
        )
    if _unnumbered_template(refresh.previous):
        raise IrreversibleInstanceRefresh(
            "The instance refresh cannot be rolled back: the Auto Scaling group uses the "
            "launch template's $Latest or $Default version."
        )
    refresh.request_rollback(group)
    return ActionResult({"InstanceRefreshId": refresh.id})


def install() -> None:
    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
    AutoScalingResponse.rollback_instance_refresh = rollback_instance_refresh
    EMULATOR.tick_hooks.append(REGISTRY.tick)
    EMULATOR.reset_hooks.append(REGISTRY.reset)
