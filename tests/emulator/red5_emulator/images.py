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
- ``snapshot`` tag specifications tag the image's snapshots;
- the image mirrors the instance's volumes, as AWS images do: its
  ``RootDeviceName`` is the instance's, and each EBS volume becomes a
  snapshot of its size in the image's ``BlockDeviceMappings`` (moto made a
  15 GiB ``/dev/sda1`` snapshot for every image);
- with the ``invisible_for_seconds`` fault switch set, the new image is
  missing from DescribeImages for that long (``InvalidAMIID.NotFound`` by
  id); other actions see it;
- DescribeImages by ids refuses the whole call with ``InvalidAMIID.NotFound``
  when one of them names no image (moto answered the others).

RegisterImage honours ``RootDeviceName``, ``BlockDeviceMappings`` (EBS
snapshots), ``Architecture``, ``VirtualizationType`` and image tag
specifications, which moto ignored. The images of moto's catalogue get an
8 GiB root snapshot, the size of the Amazon Linux and Ubuntu images they
stand for.

CopyImage, called in the destination region as on AWS, copies the source
region's image, which moto made available at once with moto's placeholder
snapshot and none of the request's tags, and crashed on an unknown source.
Here the copy:

- stays ``pending`` for the ``image_available`` delay, then turns
  ``available`` (or ``failed`` with the ``image_fail_next`` switch);
- mirrors the source's root device and block device mappings, each with a
  new snapshot of its size in the destination region;
- carries the ``image`` and ``snapshot`` tags of its TagSpecifications, and
  the source's own tags only with ``CopyImageTags`` (AWS copies none by
  default);
- is refused with ``InvalidAMIID.NotFound`` when the source is unknown in its
  region (or not available), and with ``InvalidAMIName.Duplicate`` when the
  destination region has an image of that name;
- is idempotent by ``ClientToken``: the same token with the same parameters
  answers the first copy's id, with other parameters
  ``IdempotentParameterMismatch``;
- like a new image, is missing from DescribeImages for a while with the
  ``invisible_for_seconds`` switch set.

DeleteSnapshot refuses a snapshot that any registered image maps, with
``InvalidSnapshot.InUse`` as on AWS; moto refused only the snapshots its
own CreateImage made, so an image made by RegisterImage lost its snapshots.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidAMIIdError, InvalidSnapshotInUse
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.amis import AmisResponse

from .instances import (
    IdempotentParameterMismatch,
    InvalidBlockDeviceMapping,
    _snapshot_size,
    _truthy,
    request_parameters,
)
from .state import EMULATOR, is_hidden

CATALOGUE_ROOT_GIB = 8


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
    _refuse_duplicate_name(self, name)

    image_specs = [s for s in tag_specifications if s.get("ResourceType") != "snapshot"]
    snapshot_tags: dict[str, str] = {}
    for spec in tag_specifications:
        if spec.get("ResourceType") == "snapshot":
            for tag in spec.get("Tags", []):
                snapshot_tags[tag["Key"]] = tag["Value"]

    ami = _original_create_image(self, instance_id, name, description, image_specs)
    _mirror_volumes(self, ami, instance)
    if snapshot_tags:
        for snapshot in _snapshots_of(self, ami):
            snapshot.add_tags(snapshot_tags)
    ami.state = "pending"
    visible_at = EMULATOR.invisible_until()
    if visible_at is not None:
        ami.red5_visible_at = visible_at
    failure = EMULATOR.take_fault("image_fail_next")
    EMULATOR.after("image_available", _finish_image, ami, failure)
    return ami


def _refuse_duplicate_name(backend: Any, name: str | None) -> None:
    for ami in backend.amis.values():
        if (
            ami.name == name
            and ami.owner_id == backend.account_id
            and ami.state in ("pending", "available")
        ):
            raise InvalidAMINameDuplicate(f"AMI name {name} is already in use by AMI {ami.id}")


def _mirror_volumes(backend: Any, ami: Any, instance: Any) -> None:
    """Give the image a snapshot of each of the instance's volumes."""
    devices = []
    root_snapshot = None
    for device, block in instance.get_block_device_mapping:
        volume = backend.volumes.get(block.volume_id)
        if volume is None:
            continue
        snapshot = backend.create_snapshot(
            volume.id, f"Created by CreateImage({instance.id}) for {ami.id}",
            from_ami=ami.id,
        )
        devices.append({
            "DeviceName": device,
            "Ebs": {
                "SnapshotId": snapshot.id,
                "VolumeSize": int(volume.size),
                "DeleteOnTermination": bool(block.delete_on_termination),
                "VolumeType": volume.volume_type,
                "Encrypted": bool(volume.encrypted),
            },
        })
        if device == instance.root_device_name:
            root_snapshot = snapshot
    ami.root_device_name = instance.root_device_name
    ami.root_device_type = "ebs"
    if root_snapshot is not None:
        # Moto's placeholder snapshot stands for nothing now.
        backend.snapshots.pop(ami.ebs_snapshot.id, None)
        ami.ebs_snapshot = root_snapshot
    devices.sort(key=lambda d: d["DeviceName"] != ami.root_device_name)
    ami.red5_block_devices = devices


def _snapshots_of(backend: Any, ami: Any) -> list[Any]:
    ids = [d["Ebs"].get("SnapshotId") for d in ami.block_device_mappings]
    return [backend.snapshots[i] for i in ids if i in backend.snapshots]


def block_device_mappings(self: Ami) -> list[dict[str, Any]]:
    custom = getattr(self, "red5_block_devices", None)
    if custom is not None:
        return copy.deepcopy(custom)
    return [{
        "DeviceName": self.root_device_name,
        "Ebs": {
            "SnapshotId": self.ebs_snapshot.id,
            "VolumeSize": int(self.ebs_snapshot.volume.size),
            "DeleteOnTermination": True,
            "VolumeType": "gp2",
        },
    }]


_original_ami_init = Ami.__init__


def ami_init(self: Ami, *args: Any, **kwargs: Any) -> None:
    _original_ami_init(self, *args, **kwargs)
    # Moto's placeholder snapshot is 15 GiB; the images of its catalogue stand
    # for Amazon Linux and Ubuntu images, whose root snapshot is 8 GiB.
    self.ebs_snapshot.volume.size = CATALOGUE_ROOT_GIB


# -- RegisterImage and DescribeImages ---------------------------------------------

_original_describe_images = AmisResponse.describe_images


def register_image(self: AmisResponse) -> ActionResult:
    name = self._get_param("Name")
    backend = self.ec2_backend
    root = self._get_param("RootDeviceName")
    mappings = self._get_param("BlockDeviceMappings", []) or []
    self.error_on_dryrun()
    _refuse_duplicate_name(backend, name)
    devices = []
    for mapping in mappings:
        device = mapping.get("DeviceName")
        ebs = {k: v for k, v in (mapping.get("Ebs") or {}).items() if v is not None}
        if not device or not ebs:
            continue
        snapshot_id = ebs.get("SnapshotId")
        size = ebs.get("VolumeSize")
        if snapshot_id:
            snapshot_size = _snapshot_size(backend, snapshot_id)
            if size is None:
                size = snapshot_size
            elif int(size) < snapshot_size:
                raise InvalidBlockDeviceMapping(
                    f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', "
                    f"expect size >= {snapshot_size}GB"
                )
        entry = {"DeviceName": device, "Ebs": dict(ebs)}
        if size is not None:
            entry["Ebs"]["VolumeSize"] = int(size)
        for flag in ("Encrypted", "DeleteOnTermination"):
            if flag in entry["Ebs"]:
                entry["Ebs"][flag] = _truthy(entry["Ebs"][flag])
        devices.append(entry)
    if root and devices and not any(
        d["DeviceName"] == root and d["Ebs"].get("SnapshotId") for d in devices
    ):
        raise InvalidBlockDeviceMapping(
            f"The root device name {root} has no block device mapping with a snapshot."
        )
    ami = backend.register_image(name, self._get_param("Description", ""))
    ami.architecture = self._get_param("Architecture") or "x86_64"
    ami.virtualization_type = self._get_param("VirtualizationType") or "hvm"
    if root:
        ami.root_device_name = root
        ami.root_device_type = "ebs"
    if devices:
        root_device = ami.root_device_name
        root_snapshot = next(
            (d["Ebs"].get("SnapshotId") for d in devices if d["DeviceName"] == root_device), None
        )
        if root_snapshot:
            backend.snapshots.pop(ami.ebs_snapshot.id, None)
            ami.ebs_snapshot = backend.snapshots[root_snapshot]
        devices.sort(key=lambda d: d["DeviceName"] != root_device)
        ami.red5_block_devices = devices
    for resource_type, tags in self._parse_tag_specification().items():
        if resource_type == "image":
            ami.add_tags(tags)
    return ActionResult({"ImageId": ami.id})


def describe_images(self: AmisResponse) -> ActionResult:
    hidden = {ami.id for ami in self.ec2_backend.amis.values() if is_hidden(ami)}
    # Asked by id, AWS refuses the whole call when one of the ids names no image it can
    # show (moto answered the others).
    unknown = [i for i in self._get_param("ImageIds", [])
               if i in hidden or i not in self.ec2_backend.amis]
    if unknown:
        raise InvalidAMIIdError(unknown)
    if not hidden:
        return _original_describe_images(self)
    result = _original_describe_images(self)
    result.result["Images"] = [i for i in result.result["Images"] if i.id not in hidden]
    return result


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


_original_delete_snapshot = EBSBackend.delete_snapshot


def delete_snapshot(self: Any, snapshot_id: str) -> Any:
    for ami in list(self.amis.values()):
        mapped = [d.get("Ebs", {}).get("SnapshotId") for d in ami.block_device_mappings]
        if snapshot_id in mapped:
            raise InvalidSnapshotInUse(snapshot_id, ami.id)
    return _original_delete_snapshot(self, snapshot_id)


# -- CopyImage ---------------------------------------------------------------------

# (account, destination region, client token) -> (the request's parameters, image id)
COPY_TOKENS: dict[tuple[str, str, str], tuple[tuple[tuple[str, str], ...], str]] = {}


def copy_image(self: AmisResponse) -> ActionResult:
    from moto.ec2.models import ec2_backends
    from moto.ec2.utils import random_ami_id

    self.error_on_dryrun()
    backend = self.ec2_backend
    source_id = self._get_param("SourceImageId")
    source_region = self._get_param("SourceRegion")
    name = self._get_param("Name")
    token = self._get_param("ClientToken")
    parameters = request_parameters(self, ("Action", "Version", "ClientToken", "DryRun"))
    key = (self.current_account, self.region, token or "")
    if token:
        known = COPY_TOKENS.get(key)
        if known is not None:
            if known[0] != parameters:
                raise IdempotentParameterMismatch(
                    "Arguments on this idempotent request are inconsistent with arguments "
                    "used in previous request(s)."
                )
            return ActionResult({"ImageId": known[1]})
    source_backend = ec2_backends[self.current_account][source_region]
    source = source_backend.amis.get(source_id)
    if source is None or is_hidden(source) or source.state != "available":
        raise InvalidAMIIdError([source_id])
    _refuse_duplicate_name(backend, name)
    ami = Ami(backend, random_ami_id(), source_ami=source, name=name,
              description=self._get_param("Description"))
    ami.root_device_name = source.root_device_name
    ami.root_device_type = source.root_device_type
    devices = []
    zone = f"{self.region}a"
    for mapping in source.block_device_mappings:
        ebs = dict(mapping.get("Ebs") or {})
        source_snapshot = source_backend.snapshots.get(ebs.get("SnapshotId"))
        if source_snapshot is None:
            continue
        volume = backend.create_volume(size=int(source_snapshot.volume.size), zone_name=zone)
        snapshot = backend.create_snapshot(
            volume.id, f"Copied for DestinationAmi {ami.id} from SourceAmi {source.id}",
            from_ami=ami.id,
        )
        ebs["SnapshotId"] = snapshot.id
        devices.append({"DeviceName": mapping["DeviceName"], "Ebs": ebs})
        if mapping["DeviceName"] == ami.root_device_name:
            backend.snapshots.pop(ami.ebs_snapshot.id, None)
            ami.ebs_snapshot = snapshot
    ami.red5_block_devices = devices
    backend.amis[ami.id] = ami
    if _truthy(self._get_param("CopyImageTags", False)):
        ami.add_tags({t["key"]: t["value"] for t in source.get_tags()
                      if not t["key"].startswith("aws:")})
    for resource_type, tags in self._parse_tag_specification().items():
        if resource_type == "image":
            ami.add_tags(tags)
        elif resource_type == "snapshot":
            for snapshot in _snapshots_of(backend, ami):
                snapshot.add_tags(tags)
    ami.state = "pending"
    visible_at = EMULATOR.invisible_until()
    if visible_at is not None:
        ami.red5_visible_at = visible_at
    if token:
        COPY_TOKENS[key] = (parameters, ami.id)
    failure = EMULATOR.take_fault("image_fail_next")
    EMULATOR.after("image_available", _finish_image, ami, failure)
    return ActionResult({"ImageId": ami.id})


def install() -> None:
    AmisResponse.copy_image = copy_image
    EMULATOR.reset_hooks.append(COPY_TOKENS.clear)
    AmiBackend.create_image = create_image
    EBSBackend.delete_snapshot = delete_snapshot
    Ami.__init__ = ami_init
    Ami.block_device_mappings = property(block_device_mappings)
    AmisResponse.register_image = register_image
    AmisResponse.describe_images = describe_images
