"""SSM as the builder stage sees it: agents that come online, commands that take time.

Moto lacks DescribeInstanceInformation, finishes every command at once with
empty output, and sends a command given only InstanceIds to every instance of
the region. Here:

- DescribeInstanceInformation lists instances whose SSM agent registered:
  running for the ``ssm_agent`` delay and launched with an instance profile.
  They are ``Online`` while running and ``ConnectionLost`` once stopped;
  terminated instances drop out.
- SendCommand goes only to the instances named (or matched by Targets among
  the registered ones) and refuses instances whose agent is not online with
  ``InvalidInstanceId``, as AWS does.
- GetCommandInvocation answers ``InvocationDoesNotExist`` for the
  ``ssm_invocation_visible`` delay, then ``InProgress`` until the
  ``ssm_command`` delay has passed, then ``Success`` with output that echoes
  the script, or ``Failed`` with the output and exit code given by the
  ``ssm_fail_next`` fault switch. Output is cut to AWS's 24,000 characters
  of stdout and 8,000 of stderr.
- ListCommands filters by ``CommandId``, ``InstanceId`` and ``Filters``
  (``Status``, ``DocumentName``, ``InvokedAfter``, ``InvokedBefore``), and
  ListCommandInvocations, which moto lacks, lists each command's
  invocations (``CommandId``, ``InstanceId``, ``Details`` with the plugin's
  output, cut to 2,500 characters as on AWS), so a runner can find the
  command it sent before it was interrupted.
"""

from __future__ import annotations

from typing import Any

import datetime
from typing import Iterable

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2 import ec2_backends
from moto.ssm.exceptions import SSMException
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from .instances import has_instance_profile
from .state import EMULATOR

STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
AGENT_VERSION = "3.3.1142.0"


def agent_status(instance: Any) -> str | None:
    """The PingStatus SSM reports for an instance, or None if it is not registered."""
    if not has_instance_profile(instance):
        return None
    state = instance._state.name
    if state == "running" and getattr(instance, "red5_agent_online", False):
        return "Online"
    if state in ("stopping", "stopped", "pending") and getattr(
        instance, "red5_agent_registered", False
    ):
        return "ConnectionLost"
    return None


# -- DescribeInstanceInformation ---------------------------------------------

_FILTER_KEYS = {
    "instanceids": "InstanceIds",
    "pingstatus": "PingStatus",
    "platformtypes": "PlatformTypes",
    "resourcetype": "ResourceType",
    "agentversion": "AgentVersion",
}


def _information(instance: Any, status: str) -> dict[str, Any]:
    return {
        "InstanceId": instance.id,
        "PingStatus": status,
        "LastPingDateTime": utcnow(),
        "AgentVersion": AGENT_VERSION,
        "IsLatestVersion": True,
        "PlatformType": "Linux",
        "PlatformName": "Ubuntu",
        "PlatformVersion": "22.04",
        "ResourceType": "EC2Instance",
        "IPAddress": instance.private_ip,
        "ComputerName": instance.private_dns_name,
        "SourceId": instance.id,
        "SourceType": "AWS::EC2::Instance",
    }


def _matches(info: dict[str, Any], instance: Any, key: str, values: list[str]) -> bool:
    if key.lower().startswith("tag:"):
        tag_key = key[4:]
        return any(
            t["key"] == tag_key and t["value"] in values
            for t in instance.get_tags()
        )
    if key.lower() == "tag-key":
        return any(t["key"] in values for t in instance.get_tags())
    field = _FILTER_KEYS.get(key.lower())
    if field is None:
        raise SSMException(
            "InvalidInstanceInformationFilterValue",
            f"The filter key {key} is not valid for DescribeInstanceInformation.",
        )
    if field == "InstanceIds":
        return info["InstanceId"] in values
    if field == "PlatformTypes":
        return info["PlatformType"] in values
    return str(info[field]) in values


def describe_instance_information(self: SimpleSystemManagerResponse) -> ActionResult:
    filters = [
        (f.get("Key", ""), f.get("Values", []))
        for f in self._get_param("Filters", []) or []
    ] + [
        (f.get("key", ""), f.get("valueSet", []))
        for f in self._get_param("InstanceInformationFilterList", []) or []
    ]
    max_results = self._get_int_param("MaxResults") or 50
    if not 5 <= max_results <= 50:
        raise SSMException(
            "ValidationException",
            "1 validation error detected: Value at 'maxResults' failed to satisfy "
            "constraint: Member must have value between 5 and 50",
        )
    token = self._get_param("NextToken")
    ec2 = ec2_backends[self.current_account][self.region]
    matched = []
    for instance in ec2.all_instances():
        status = agent_status(instance)
        if status is None:
            continue
        info = _information(instance, status)
        if all(_matches(info, instance, key, values) for key, values in filters):
            matched.append(info)
    start = int(token) if token and token.isdigit() else 0
    page = matched[start:start + max_results]
    result: dict[str, Any] = {"InstanceInformationList": page}
    if start + max_results < len(matched):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


# -- SendCommand / GetCommandInvocation --------------------------------------

_original_send_command = SimpleSystemManagerBackend.send_command
_original_get_invocation = Command.get_invocation


def _targets_only(self: Command) -> list[str]:
    # Moto turns an empty target list into "every instance of the region";
    # AWS sends the command to the named instances only.
    if not self.targets:
        return []
    ec2 = ec2_backends[self.account_id][self.backend_region]
    # SSM's "InstanceIds" target key is EC2's "instance-id" filter.
    filters = {
        "instance-id" if target["Key"] == "InstanceIds" else target["Key"]: target["Values"]
        for target in self.targets
    }
    return [
        instance.id
        for reservation in ec2.all_reservations(filters=filters)
        for instance in reservation.instances
        if agent_status(instance) == "Online"
    ]


def send_command(self: SimpleSystemManagerBackend, **kwargs: Any) -> Command:
    instance_ids = kwargs.get("instance_ids") or []
    ec2 = ec2_backends[self.account_id][self.region_name]
    invalid = []
    for instance_id in instance_ids:
        instance = ec2.get_instance_by_id(instance_id)
        if instance is None or agent_status(instance) != "Online":
            invalid.append(instance_id)
    if invalid:
        raise SSMException(
            "InvalidInstanceId",
            f"Instances [[{', '.join(invalid)}]] not in a valid state for account "
            f"{self.account_id}",
        )
    command = _original_send_command(self, **kwargs)
    if not command.instance_ids:
        raise SSMException(
            "InvalidInstanceId",
            "No instance matched the targets, or none of them has an online SSM agent.",
        )
    failure = EMULATOR.take_fault("ssm_fail_next")
    command.status = "InProgress"
    command.status_details = "InProgress"
    command.completed_count = 0
    command.target_count = len(command.instance_ids)
    command.red5_visible_at = EMULATOR.now() + EMULATOR.delay("ssm_invocation_visible")
    command.red5_started = utcnow()
    for invocation in command.invocations:
        invocation.update(
            {
                "Status": "InProgress",
                "StatusDetails": "InProgress",
                "ResponseCode": -1,
                "ExecutionStartDateTime": command.red5_started.isoformat(),
                "ExecutionElapsedTime": "PT0S",
                "ExecutionEndDateTime": "",
                "StandardOutputContent": "",
                "StandardErrorContent": "",
            }
        )
    EMULATOR.after("ssm_command", _finish_command, command, failure)
    return command


def _script_lines(command: Command) -> list[str]:
    lines: list[str] = []
    for entry in command.parameters.get("commands", []) or []:
        lines.extend(str(entry).splitlines() or [""])
    return lines


def _success_output(command: Command, instance_id: str) -> str:
    lines = _script_lines(command)
    out = [f"running {len(lines)} script lines on {instance_id}"]
    out.extend(f"+ {line}" for line in lines)
    out.append(f"completed {len(lines)} script lines with exit code 0")
    return "\n".join(out) + "\n"


def _finish_command(command: Command, failure: dict[str, Any] | None) -> None:
    ended = utcnow()
    elapsed = (ended - command.red5_started).total_seconds()
    for invocation in command.invocations:
        if failure is None:
            status = "Success"
            code = 0
            stdout = _success_output(command, invocation["InstanceId"])
            stderr = ""
        else:
            status = "Failed"
            code = failure["exit_code"]
            stdout = failure["output"]
            stderr = failure["stderr"]
            if stderr is None:
                stderr = f"failed to run commands: exit status {code}"
        invocation.update(
            {
                "Status": status,
                "StatusDetails": status,
                "ResponseCode": code,
                "ExecutionElapsedTime": f"PT{elapsed:.3f}S",
                "ExecutionEndDateTime": ended.isoformat(),
                "StandardOutputContent": stdout[:STDOUT_LIMIT],
                "StandardErrorContent": stderr[:STDERR_LIMIT],
            }
        )
        EMULATOR.record_event(
            "command_finished", command.command_id,
            instance_id=invocation["InstanceId"], status=status,
        )
    command.status = "Success" if failure is None else "Failed"
    command.status_details = command.status
    command.completed_count = len(command.invocations)
    command.error_count = 0 if failure is None else len(command.invocations)


def get_invocation(self: Command, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
    if EMULATOR.now() < getattr(self, "red5_visible_at", 0.0):
        raise SSMException(
            "InvocationDoesNotExist",
            "The command invocation does not exist yet; it is still being delivered.",
        )
    return _original_get_invocation(self, instance_id, plugin_name)


# -- ListCommands / ListCommandInvocations -------------------------------------

DETAILS_OUTPUT_LIMIT = 2_500
_COMMAND_FILTER_KEYS = ("Status", "DocumentName", "InvokedAfter", "InvokedBefore", "ExecutionStage")
_COMMAND_STATUSES = ("Pending", "InProgress", "Success", "Cancelled", "Failed", "TimedOut", "Cancelling")


def _as_datetime(value: str, key: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SSMException(
            "InvalidFilterValue", f"The filter value {value} is not valid for the key {key}."
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _requested(command: Command) -> datetime.datetime:
    requested = command.requested_date_time
    return requested if requested.tzinfo else requested.replace(tzinfo=datetime.timezone.utc)


def _command_matches(command: Command, filters: Iterable[dict[str, Any]]) -> bool:
    for entry in filters:
        key, value = entry.get("key") or entry.get("Key"), entry.get("value") or entry.get("Value")
        if key not in _COMMAND_FILTER_KEYS or value is None:
            raise SSMException(
                "InvalidFilterKey", f"The filter key {key} is not valid for ListCommands."
            )
        if key == "Status":
            if value not in _COMMAND_STATUSES:
                raise SSMException("InvalidFilterValue", f"The filter value {value} is not valid for the key Status.")
            if command.status != value:
                return False
        elif key == "DocumentName" and command.document_name != value:
            return False
        elif key == "InvokedAfter" and _requested(command) < _as_datetime(value, key):
            return False
        elif key == "InvokedBefore" and _requested(command) > _as_datetime(value, key):
            return False
        elif key == "ExecutionStage" and value != "Executing":
            return False
    return True


def _page(self: SimpleSystemManagerResponse, items: list[Any], key: str) -> ActionResult:
    max_results = self._get_int_param("MaxResults") or 50
    if not 1 <= max_results <= 50:
        raise SSMException(
            "ValidationException",
            "1 validation error detected: Value at 'maxResults' failed to satisfy "
            "constraint: Member must have value between 1 and 50",
        )
    token = self._get_param("NextToken")
    start = int(token) if token and token.isdigit() else 0
    result: dict[str, Any] = {key: items[start:start + max_results]}
    if start + max_results < len(items):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


def _commands(self: SimpleSystemManagerResponse) -> list[Command]:
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    backend = self.ssm_backend
    commands = [backend.get_command_by_id(command_id)] if command_id else list(backend._commands)
    if instance_id:
        commands = [c for c in commands if instance_id in c.instance_ids]
    filters = self._get_param("Filters", []) or []
    # AWS lists the newest first.
    return [c for c in reversed(commands) if _command_matches(c, filters)]


def list_commands(self: SimpleSystemManagerResponse) -> ActionResult:
    return _page(self, [c.response_object() for c in _commands(self)], "Commands")


def list_command_invocations(self: SimpleSystemManagerResponse) -> ActionResult:
    details = self._get_bool_param("Details", False)
    invocations = []
    for command in _commands(self):
        if EMULATOR.now() < getattr(command, "red5_visible_at", 0.0):
            continue
        wanted = self._get_param("InstanceId")
        for invocation in command.invocations:
            if wanted and invocation["InstanceId"] != wanted:
                continue
            instance = ec2_backends[self.current_account][self.region].get_instance_by_id(
                invocation["InstanceId"]
            )
            entry: dict[str, Any] = {
                "CommandId": command.command_id,
                "InstanceId": invocation["InstanceId"],
                "InstanceName": instance.private_dns_name if instance is not None else "",
                "Comment": command.comment,
                "DocumentName": command.document_name,
                "DocumentVersion": "$DEFAULT",
                "RequestedDateTime": command.requested_date_time,
                "Status": invocation["Status"],
                "StatusDetails": invocation["StatusDetails"],
                "StandardOutputUrl": "",
                "StandardErrorUrl": "",
                "CommandPlugins": [],
                "ServiceRole": command.service_role_arn or "",
                "NotificationConfig": command.notification_config,
            }
            if details:
                entry["CommandPlugins"] = [{
                    "Name": invocation.get("PluginName") or "aws:runShellScript",
                    "Status": invocation["Status"],
                    "StatusDetails": invocation["StatusDetails"],
                    "ResponseCode": invocation["ResponseCode"],
                    "ResponseStartDateTime": command.red5_started
                    if hasattr(command, "red5_started") else command.requested_date_time,
                    "Output": (invocation.get("StandardOutputContent") or "")[:DETAILS_OUTPUT_LIMIT],
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                }]
                ended = invocation.get("ExecutionEndDateTime")
                if ended:
                    entry["CommandPlugins"][0]["ResponseFinishDateTime"] = datetime.datetime.fromisoformat(ended)
            invocations.append(entry)
    return _page(self, invocations, "CommandInvocations")


def install() -> None:
    SimpleSystemManagerResponse.list_commands = list_commands
    SimpleSystemManagerResponse.list_command_invocations = list_command_invocations
    Command._get_instance_ids_from_targets = _targets_only
    SimpleSystemManagerBackend.send_command = send_command
    Command.get_invocation = get_invocation
    SimpleSystemManagerResponse.describe_instance_information = describe_instance_information

