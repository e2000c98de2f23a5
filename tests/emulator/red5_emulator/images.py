"""CreateImage with AWS's behaviour: pending first, then available or failed.

Moto makes an image ``available`` at once, accepts duplicate names and
crashes on TagSpecifications of type ``snapshot``. Here:

- the image stays ``pending`` for the ``image_available`` delay, then turns
  ``available``, or ``failed`` with a StateReason when the
  ``image_fail_next`` fault switch was set at CreateImage time;
- a name already used by one of the account's pending or available images is
  refused with ``InvalidAMIName.Duplicate``, as on AWS;
- an instance that is pending or terminated is refused with
  ``IncorrectInstanceState``;
- ``snapshot`` tag specifications tag the image's snapshot.
"""

from __future__ import annotations

from typing import Any

from moto.core.exceptions import ServiceException
from moto.ec2.models.amis import AmiBackend

from .state import EMULATOR


class InvalidAMINameDuplicate(ServiceException):
    code = "InvalidAMIName.Duplicate"


class IncorrectInstanceState(ServiceException):
    code = "IncorrectInstanceState"


_original_create_image = AmiBackend.create_image


def create_image(self: Any, instance_id: str, name: str, description: str,
                 tag_specifications: list[dict[str, Any]]) -> Any:
    instance = self.get_instance(instance_id)
    if instance._state.name not in ("running", "stopping", "stopped"):
        raise IncorrectInstanceState(
            f"The instance '{instance_id}' is not in a state from which it can be imaged."
        )
    for ami in self.amis.values():
        if (
            ami.name == name
            and ami.owner_id == self.account_id
            and ami.state in ("pending", "available")
        ):
            raise InvalidAMINameDuplicate(f"AMI name {name} is already in use by AMI {ami.id}")

    image_specs = [s for s in tag_specifications if s.get("ResourceType") != "snapshot"]
    snapshot_tags: dict[str, str] = {}
    for spec in tag_specifications:
        if spec.get("ResourceType") == "snapshot":
            for tag in spec.get("Tags", []):
                snapshot_tags[tag["Key"]] = tag["Value"]

    ami = _original_create_image(self, instance_id, name, description, image_specs)
    if snapshot_tags:
        ami.ebs_snapshot.add_tags(snapshot_tags)
    ami.state = "pending"
    failure = EMULATOR.take_fault("image_fail_next")
    EMULATOR.after("image_available", _finish_image, ami, failure)
    return ami


def _finish_image(ami: Any, failure: dict[str, str] | None) -> None:
    # A pending image that was deregistered meanwhile is gone for good.
    if ami.state != "pending" or ami.ec2_backend.amis.get(ami.id) is not ami:
        return
    if failure is None:
        ami.state = "available"
        EMULATOR.record_event("image_available", ami.id)
    else:
        ami.state = "failed"
        ami.state_reason = {"Code": "Server.InternalError", "Message": failure["reason"]}
        EMULATOR.record_event("image_failed", ami.id, reason=failure["reason"])


def install() -> None:
    AmiBackend.create_image = create_image
