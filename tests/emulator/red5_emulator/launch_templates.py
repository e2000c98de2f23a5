"""Launch template versions as EC2 makes them.

Moto ignores ``SourceVersion`` in CreateLaunchTemplateVersion. On AWS a new
version holds only the fields given, unless ``SourceVersion`` names a version
(a number, ``$Latest`` or ``$Default``) to start from: then each top-level
field given replaces the source's field of that name, a list such as
``BlockDeviceMappings`` or ``NetworkInterfaces`` wholesale, and the fields
not given are kept. Here that is so.

Moto also copies CreateLaunchTemplate's own ``launch-template`` tags into
version 1's ``TagSpecifications``, where AWS keeps only what the launch
template data holds; they are taken out again.

With the ``invisible_for_seconds`` fault switch set, a version made by
CreateLaunchTemplateVersion is missing from DescribeLaunchTemplateVersions
for that long: asked for by number it is
``InvalidLaunchTemplateId.VersionNotFound``, ``$Latest`` answers the newest
version already visible, and listings omit it. Auto Scaling and
RunInstances use it at once.

DeleteLaunchTemplateVersions, which moto lacks, deletes up to 200 versions
per call and answers per version, as AWS does: the template's default
version is refused (``UnsuccessfullyDeletedLaunchTemplateVersions`` with
``ResponseError`` code ``unexpectedError``, "Cannot delete the default
version of a launch template"), and so is a version that does not exist
(``launchTemplateVersionDoesNotExist``). A deleted version is gone from
DescribeLaunchTemplateVersions (by number it is
``InvalidLaunchTemplateId.VersionNotFound``) and from ``$Latest``; numbers
are never reused. ModifyLaunchTemplate refuses to make a deleted version the
default (``InvalidLaunchTemplateId.VersionNotFound``), as it refuses one that
never existed; moto accepted a deleted one.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.responses import ActionResult
from moto.core.exceptions import ServiceException
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
from moto.ec2.responses.launch_templates import LaunchTemplates

from .state import EMULATOR, is_hidden

_original_create_launch_template = LaunchTemplates.create_launch_template
_original_get_version = LaunchTemplate.get_version

# The most versions one DeleteLaunchTemplateVersions call takes.
VERSIONS_PER_DELETE = 200


class VersionLimitExceeded(ServiceException):
    code = "VersionLimitExceeded"


def is_deleted(version: Any) -> bool:
    return getattr(version, "red5_deleted", False)


def _live(template: Any) -> list[Any]:
    return [v for v in template.versions if not is_deleted(v)]


def latest_version(self: Any) -> Any:
    live = _live(self)
    return live[-1] if live else self.versions[-1]


def get_version(self: Any, num: Any) -> Any:
    if str(num).lower() == "$latest":
        return latest_version(self)
    version = _original_get_version(self, num)
    if is_deleted(version):
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num)
    return version


def delete_launch_template_versions(self: LaunchTemplates) -> ActionResult:
    name = self._get_param("LaunchTemplateName")
    template_id = self._get_param("LaunchTemplateId")
    if template_id:
        template = self.ec2_backend.get_launch_template(template_id)
    else:
        template = self.ec2_backend.get_launch_template_by_name(name)
    wanted = [str(v) for v in self._get_param("Versions", []) or []]
    self.error_on_dryrun()
    if len(wanted) > VERSIONS_PER_DELETE:
        raise VersionLimitExceeded(
            f"You can delete up to {VERSIONS_PER_DELETE} launch template versions in a single request."
        )
    deleted, refused = [], []
    for text in wanted:
        entry = {
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
        }
        number = int(text) if text.isdigit() else None
        version = (
            template.versions[number - 1]
            if number is not None and 1 <= number <= len(template.versions)
            else None
        )
        if number is not None:
            entry["VersionNumber"] = number
        if version is None or is_deleted(version):
            refused.append(dict(entry, ResponseError={
                "Code": "launchTemplateVersionDoesNotExist",
                "Message": f"The specified launch template version does not exist: {text}",
            }))
        elif template.is_default(version):
            refused.append(dict(entry, ResponseError={
                "Code": "unexpectedError",
                "Message": "Cannot delete the default version of a launch template.",
            }))
        else:
            version.red5_deleted = True
            deleted.append(entry)
    return ActionResult({
        "SuccessfullyDeletedLaunchTemplateVersions": deleted,
        "UnsuccessfullyDeletedLaunchTemplateVersions": refused,
    })
_original_describe_versions = LaunchTemplateBackend.describe_launch_template_versions


def create_launch_template(self: LaunchTemplates) -> ActionResult:
    given = self._get_param("LaunchTemplateData", {}) or {}
    given_types = {
        spec.get("ResourceType") for spec in given.get("TagSpecifications", []) or []
    }
    result = _original_create_launch_template(self)
    template = self.ec2_backend.get_launch_template(result.result["LaunchTemplate"]["LaunchTemplateId"])
    data = template.versions[0].data
    if "TagSpecifications" in data and "launch-template" not in given_types:
        kept = [s for s in data["TagSpecifications"] if s.get("ResourceType") != "launch-template"]
        if kept:
            data["TagSpecifications"] = kept
        else:
            del data["TagSpecifications"]
    if data.get("UserData") is None:
        data.pop("UserData", None)
    return result


def create_launch_template_version(self: LaunchTemplates) -> ActionResult:
    name = self._get_param("LaunchTemplateName")
    template_id = self._get_param("LaunchTemplateId")
    if template_id:
        template = self.ec2_backend.get_launch_template(template_id)
    else:
        template = self.ec2_backend.get_launch_template_by_name(name)
    description = self._get_param("VersionDescription")
    given = self._get_param("LaunchTemplateData", {}) or {}
    source_version = self._get_param("SourceVersion")
    self.error_on_dryrun()

    if source_version is not None:
        source = _source(template, str(source_version))
        data = copy.deepcopy(source.data)
        # Top-level fields replace the source's; lists are not merged.
        data.update(given)
    else:
        data = dict(given)
    version = template.create_version(data, description)
    visible_at = EMULATOR.invisible_until()
    if visible_at is not None:
        version.red5_visible_at = visible_at

    return ActionResult({
        "LaunchTemplateVersion": {
            "CreateTime": version.create_time,
            "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
            "DefaultVersion": template.is_default(version),
            "LaunchTemplateData": version.data,
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
            "VersionDescription": version.description,
            "VersionNumber": version.number,
        },
    })


def _source(template: Any, text: str) -> Any:
    lowered = text.lower()
    if lowered in ("$latest", "$default"):
        return template.get_version(lowered)
    if (
        not text.isdigit()
        or not 1 <= int(text) <= len(template.versions)
        or is_deleted(template.versions[int(text) - 1])
    ):
        raise InvalidLaunchTemplateVersionNotFound(version=text, template_id=template.id)
    return template.versions[int(text) - 1]


def describe_launch_template_versions(self: Any, template_name: str, template_id: str,
                                      versions: list[str], min_version: int, max_version: int,
                                      max_results: int) -> list[Any]:
    template = None
    if template_name:
        template = self.get_launch_template_by_name(template_name)
    elif template_id:
        template = self.get_launch_template(template_id)
    if template is not None and versions:
        wanted = []
        for version in versions:
            text = str(version)
            if text.lower() == "$latest":
                visible = [v for v in _live(template) if not is_hidden(v)]
                wanted.append(str(visible[-1].number) if visible else text)
            elif text.isdigit() and 1 <= int(text) <= len(template.versions) and (
                is_hidden(template.versions[int(text) - 1])
                or is_deleted(template.versions[int(text) - 1])
            ):
                raise InvalidLaunchTemplateVersionNotFound(version=text, template_id=template.id)
            else:
                wanted.append(text)
        versions = wanted
    found = _original_describe_versions(
        self, template_name, template_id, versions, min_version, max_version, max_results
    )
    return [(t, v) for t, v in found if not is_hidden(v) and not is_deleted(v)]


_original_modify_launch_template = LaunchTemplateBackend.modify_launch_template


def modify_launch_template(self: Any, default_version: str, template_name: str | None = None,
                           template_id: str | None = None) -> Any:
    template = None
    if template_name:
        template = self.get_launch_template_by_name(template_name)
    elif template_id:
        template = self.get_launch_template(template_id)
    text = str(default_version)
    if template is not None and text.isdigit() and 1 <= int(text) <= len(template.versions) \
            and is_deleted(template.versions[int(text) - 1]):
        raise InvalidLaunchTemplateVersionNotFound(version=text, template_id=template.id)
    return _original_modify_launch_template(self, default_version, template_name=template_name,
                                            template_id=template_id)


def install() -> None:
    LaunchTemplateBackend.modify_launch_template = modify_launch_template
    LaunchTemplates.create_launch_template = create_launch_template
    LaunchTemplates.create_launch_template_version = create_launch_template_version
    LaunchTemplates.delete_launch_template_versions = delete_launch_template_versions
    LaunchTemplate.latest_version = latest_version
    LaunchTemplate.get_version = get_version
    LaunchTemplateBackend.describe_launch_template_versions = describe_launch_template_versions
