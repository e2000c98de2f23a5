"""AWS managed IAM policies, loaded one at a time when first used.

Moto either knows none of AWS's managed policies (so attaching
AmazonSSMManagedInstanceCore fails) or, with MOTO_IAM_LOAD_MANAGED_POLICIES,
builds all of them whenever an account's IAM backend is created, which costs
most of a second after every ``/moto-api/reset``. Here a managed policy is
created from moto's bundled copy the first time a request names its ARN, so
attaching, reading and detaching work, at no cost to requests that do not.
ListPolicies only shows the managed policies used so far.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, IAMBackend

_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy(?P<path>/(?:[^/]+/)*)(?P<name>[^/]+)$")
_catalogue: dict[str, Any] | None = None


def _data(name: str) -> dict[str, Any] | None:
    global _catalogue
    if _catalogue is None:
        _catalogue = json.loads(aws_managed_policies_data)
    return _catalogue.get(name)


def ensure_managed_policy(backend: IAMBackend, arn: str) -> None:
    if not isinstance(arn, str) or arn in backend.managed_policies:
        return
    match = _ARN.match(arn)
    if match is None:
        return
    data = _data(match.group("name"))
    if data is None or data.get("Path", "/") != match.group("path"):
        return
    policy = AWSManagedPolicy.from_data(match.group("name"), backend.account_id, backend.region_name, data)
    if policy.arn == arn:
        backend.managed_policies[policy.arn] = policy


def _with_policy(method: Any) -> Any:
    def wrapper(self: IAMBackend, policy_arn: str, *args: Any, **kwargs: Any) -> Any:
        ensure_managed_policy(self, policy_arn)
        return method(self, policy_arn, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def install() -> None:
    for name in ("attach_role_policy", "attach_group_policy", "attach_user_policy",
                 "get_policy", "get_policy_version", "list_policy_versions"):
        original = getattr(IAMBackend, name, None)
        if original is not None:
            setattr(IAMBackend, name, _with_policy(original))
