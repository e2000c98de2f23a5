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
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound
from moto.ec2.responses.launch_templates import LaunchTemplates


_original_create_launch_template = LaunchTemplates.create_launch_template


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
    if not text.isdigit() or not 1 <= int(text) <= len(template.versions):
        raise InvalidLaunchTemplateVersionNotFound(version=text, template_id=template.id)
    return template.versions[int(text) - 1]


def install() -> None:
    LaunchTemplates.create_launch_template = create_launch_template
    LaunchTemplates.create_launch_template_version = create_launch_template_version
