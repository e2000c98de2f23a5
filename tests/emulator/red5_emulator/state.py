"""The emulator's own state: its clock, delays, fault switches and logs.

Moto keeps the AWS resources; this module keeps everything the emulator adds
on top of them. There is one instance, ``EMULATOR``, shared by the HTTP
layer, the background ticker and the extensions patched into moto.

All AWS requests and every tick of the clock run under ``EMULATOR.lock``, so
the extensions never observe a half-applied change: moto itself has no
locking, and the emulator behaves like a single-threaded event loop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import Counter
from typing import Any, Callable

LOG = logging.getLogger("red5_emulator")

# Realistic durations in seconds, as observed on AWS. Every wait the emulator
# imposes is one of these multiplied by the time scale, so tests can run the
# same lifecycle a hundred times faster than the real thing.
DEFAULT_DELAYS: dict[str, float] = {
    # RunInstances, StartInstances and Auto Scaling launches: pending -> running.
    "instance_running": 20.0,
    # After an instance is running, until DescribeInstanceInformation lists
    # its SSM agent as Online (only instances with an instance profile).
    "ssm_agent": 10.0,
    # SendCommand until its invocations finish.
    "ssm_command": 30.0,
    # CreateImage: pending -> available (or failed).
    "image_available": 60.0,
    # StopInstances: stopping -> stopped.
    "instance_stop": 15.0,
    # Right after SendCommand, GetCommandInvocation answers
    # InvocationDoesNotExist for this long, as AWS does.
    "ssm_invocation_visible": 2.0,
    # StartInstanceRefresh stays Pending this long before InProgress.
    "refresh_pending": 5.0,
}

DEFAULT_TIME_SCALE = 0.01

# How often the background ticker applies due transitions, in real seconds.
# The ticker also runs before every AWS request, so this only bounds how late
# a transition becomes visible to a client that is not polling.
TICK_INTERVAL = 0.02

# The chronological call and event lists keep at most this many entries, so
# a demo left running for days does not grow without bound; the per-action
# counts stay exact.
LOG_LIMIT = 100_000

# Fault switches accepted by POST /_emulator/faults, with their validators.
FAULT_KEYS = (
    "ssm_fail_next",
    "image_fail_next",
    "refresh_fail_at_percent",
    "throttle_fraction",
    "throttle_only",
    "throttle_for_seconds",
    "server_error_burst",
    "invisible_for_seconds",
)


class ControlError(ValueError):
    """A control API request that cannot be applied; answered with HTTP 400."""


def _env_time_scale() -> float:
    raw = os.environ.get("RED5_EMULATOR_TIME_SCALE")
    if not raw:
        return DEFAULT_TIME_SCALE
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"RED5_EMULATOR_TIME_SCALE must be a number, got {raw!r}")
    if value <= 0:
        raise SystemExit("RED5_EMULATOR_TIME_SCALE must be greater than zero")
    return value


class Emulator:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.time_scale = _env_time_scale()
        self.delays: dict[str, float] = dict(DEFAULT_DELAYS)
        self.faults: dict[str, Any] = {}
        self._throttle_credit = 0.0
        # When the throttle window of ``throttle_for_seconds`` ends (monotonic
        # real seconds), or None.
        self._throttle_until: float | None = None
        self.calls: list[dict[str, Any]] = []
        self.call_counts: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = itertools.count()
        # Extensions register what must run on every tick (the instance
        # refresh engine) and what must be forgotten on a moto reset.
        self.tick_hooks: list[Callable[[float], None]] = []
        self.reset_hooks: list[Callable[[], None]] = []

    # -- time -------------------------------------------------------------

    def real_seconds(self, emulated: float) -> float:
        return max(0.0, float(emulated)) * self.time_scale

    def delay(self, name: str) -> float:
        """The real number of seconds the named emulated delay lasts now."""
        return self.real_seconds(self.delays[name])

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def call_later(self, seconds: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` under the lock once ``seconds`` real seconds passed.

        Transitions are scheduled when they start, so a change of the delays
        or of the time scale applies to transitions that start afterwards.
        """
        due = self.now() + max(0.0, seconds)
        heapq.heappush(self._timers, (due, next(self._sequence), fn, args))

    def after(self, delay_name: str, fn: Callable[..., None], *args: Any) -> None:
        self.call_later(self.delay(delay_name), fn, *args)

    def tick(self) -> None:
        """Apply every transition that is due. Callers hold the lock."""
        now = self.now()
        self._expire_throttle_window(now)
        while self._timers and self._timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self._timers)
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one broken timer must not stop the clock
                LOG.exception("emulator transition %s failed", getattr(fn, "__name__", fn))
        for hook in list(self.tick_hooks):
            try:
                hook(now)
            except Exception:  # noqa: BLE001 - same reason as above
                LOG.exception("emulator tick hook %s failed", getattr(hook, "__name__", hook))

    # -- events -----------------------------------------------------------

    def record_event(self, kind: str, resource_id: str, **extra: Any) -> None:
        event = {"time": time.time(), "kind": kind, "id": resource_id}
        event.update(extra)
        self.events.append(event)
        if len(self.events) > LOG_LIMIT:
            del self.events[: len(self.events) - LOG_LIMIT]

    # -- calls ------------------------------------------------------------

    def record_call(self, service: str, action: str) -> dict[str, Any]:
        key = f"{service}:{action}"
        entry = {
            "time": time.time(),
            "service": service,
            "action": action,
            "key": key,
            "mutating": is_mutating(action),
            "status": None,
            "fault": None,
        }
        self.calls.append(entry)
        if len(self.calls) > LOG_LIMIT:
            del self.calls[: len(self.calls) - LOG_LIMIT]
        self.call_counts[key] += 1
        return entry

    def reset_calls(self) -> None:
        self.calls.clear()
        self.call_counts.clear()

    # -- faults -----------------------------------------------------------

    def merge_faults(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise ControlError("the faults body must be a JSON object")
        unknown = sorted(set(body) - set(FAULT_KEYS))
        if unknown:
            raise ControlError(
                f"unknown fault switch {', '.join(unknown)}; known: {', '.join(FAULT_KEYS)}"
            )
        validated = {key: _validate_fault(key, value) for key, value in body.items()}
        for key, value in validated.items():
            if value is None:
                self.faults.pop(key, None)
            else:
                self.faults[key] = value
            if key == "throttle_fraction":
                # Restart the deterministic throttling pattern so a test knows
                # exactly which of its next calls will be refused.
                self._throttle_credit = 0.0
            if key == "throttle_for_seconds":
                # The window starts when the switch is set (set again: starts
                # again), in emulated seconds at the current time scale.
                self._throttle_until = (
                    None if value is None else self.now() + self.real_seconds(value)
                )

    def clear_faults(self) -> None:
        self.faults.clear()
        self._throttle_credit = 0.0
        self._throttle_until = None

    def _expire_throttle_window(self, now: float) -> None:
        if self._throttle_until is not None and now >= self._throttle_until:
            self._throttle_until = None
            self.faults.pop("throttle_for_seconds", None)

    def invisible_until(self) -> float | None:
        """When a resource created now becomes visible to Describe calls.

        None while the ``invisible_for_seconds`` switch is not set. The
        switch stays armed until cleared, so every creation meanwhile gets
        its own window.
        """
        seconds = self.faults.get("invisible_for_seconds")
        if not seconds:
            return None
        return self.now() + self.real_seconds(seconds)

    def take_fault(self, key: str) -> Any:
        """Consume a one-shot switch; returns its value or None."""
        return self.faults.pop(key, None)

    def next_request_fault(self, service: str, action: str) -> str | None:
        """Decide whether this AWS call is refused: "server_error", "throttled" or None.

        A server error burst wins over throttling. Throttling is
        deterministic: with fraction f, every call that brings the running
        sum of f to a whole number is refused (0.2: the 5th, 10th, ... call).
        """
        burst = self.faults.get("server_error_burst")
        if burst:
            if burst <= 1:
                self.faults.pop("server_error_burst", None)
            else:
                self.faults["server_error_burst"] = burst - 1
            return "server_error"
        self._expire_throttle_window(self.now())
        fraction = self.faults.get("throttle_fraction")
        window = self._throttle_until is not None
        if not fraction and not window:
            return None
        only = self.faults.get("throttle_only")
        if only and not any(
            service == rule or f"{service}:{action}" == rule for rule in only
        ):
            return None
        if window:
            return "throttled"
        self._throttle_credit += fraction
        if self._throttle_credit >= 1.0 - 1e-9:
            self._throttle_credit -= 1.0
            return "throttled"
        return None

    # -- delays -----------------------------------------------------------

    def merge_delays(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise ControlError("the delays body must be a JSON object")
        known = set(DEFAULT_DELAYS) | {"time_scale"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ControlError(
                f"unknown delay {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for key, value in body.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ControlError(f"{key} must be a number of seconds")
            if key == "time_scale":
                if value <= 0:
                    raise ControlError("time_scale must be greater than zero")
            elif value < 0:
                raise ControlError(f"{key} must not be negative")
        for key, value in body.items():
            if key == "time_scale":
                self.time_scale = float(value)
            else:
                self.delays[key] = float(value)

    def describe_delays(self) -> dict[str, float]:
        result = dict(self.delays)
        result["time_scale"] = self.time_scale
        return result

    # -- reset ------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything tied to moto's resources (after /moto-api/reset).

        Delays and the time scale are settings of the process, not state of
        the emulated account, so they survive.
        """
        self._timers.clear()
        self.events.clear()
        self.clear_faults()
        self.reset_calls()
        for hook in list(self.reset_hooks):
            hook()


def is_mutating(action: str) -> bool:
    return not action.startswith(("Describe", "Get", "List"))


def _validate_fault(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "ssm_fail_next":
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ControlError("ssm_fail_next must be an object such as {\"output\": \"...\", \"exit_code\": 3}")
        unknown = sorted(set(value) - {"output", "exit_code", "stderr"})
        if unknown:
            raise ControlError(f"ssm_fail_next: unknown field {', '.join(unknown)}")
        output = value.get("output", "")
        exit_code = value.get("exit_code", 1)
        stderr = value.get("stderr")
        if not isinstance(output, str):
            raise ControlError("ssm_fail_next.output must be a string")
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise ControlError("ssm_fail_next.exit_code must be an integer")
        if stderr is not None and not isinstance(stderr, str):
            raise ControlError("ssm_fail_next.stderr must be a string")
        return {"output": output, "exit_code": exit_code, "stderr": stderr}
    if key == "image_fail_next":
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ControlError("image_fail_next must be an object such as {\"reason\": \"...\"}")
        unknown = sorted(set(value) - {"reason"})
        if unknown:
            raise ControlError(f"image_fail_next: unknown field {', '.join(unknown)}")
        reason = value.get("reason", "Image creation failed.")
        if not isinstance(reason, str):
            raise ControlError("image_fail_next.reason must be a string")
        return {"reason": reason}
    if key == "refresh_fail_at_percent":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise ControlError("refresh_fail_at_percent must be a number from 0 to 100")
        return value
    if key == "throttle_fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ControlError("throttle_fraction must be a number from 0 to 1")
        return float(value) or None
    if key == "throttle_only":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ControlError("throttle_only must be a list such as [\"ec2\", \"ssm:GetCommandInvocation\"]")
        return value or None
    if key in ("throttle_for_seconds", "invisible_for_seconds"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ControlError(f"{key} must be a number of emulated seconds (0 or more)")
        return value or None
    if key == "server_error_burst":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ControlError("server_error_burst must be a non-negative integer")
        return value or None
    raise ControlError(f"unknown fault switch {key}")


EMULATOR = Emulator()


def is_hidden(resource: Any) -> bool:
    """Whether a resource created under ``invisible_for_seconds`` is still unseen."""
    visible_at = getattr(resource, "red5_visible_at", None)
    return visible_at is not None and EMULATOR.now() < visible_at
