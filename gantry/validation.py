"""What every Gantry model shares: strict pydantic models, one-line errors naming the key."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The Pulumi config namespace (the project name in Pulumi.yaml).
NAMESPACE = "gantry"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A label/taint key: optional DNS-subdomain prefix, then a name (Kubernetes' qualified name rules).
QUALIFIED_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

DnsName = Annotated[str, Field(pattern=DNS_LABEL, max_length=40)]
NonNegInt = Annotated[int, Field(ge=0)]


class StrictModel(BaseModel):
    # Unknown keys are typos: reject them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyedError(ValueError):
    """A cross-field error that knows which key it belongs to: `key` is absolute (from the
    stack's top), or with `relative=True` a key inside the model that raised it."""

    def __init__(self, key: str, message: str, relative: bool = False) -> None:
        super().__init__(message)
        self.key = key
        self.relative = relative


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_error(err: ValidationError, prefix: str = NAMESPACE) -> str:
    """One line: the first problem, with its full key (e.g. `gantry:pools[1].max_size`)."""
    first = err.errors()[0]
    ctx_err = (first.get("ctx") or {}).get("error")
    key = _loc(tuple(p for p in first["loc"] if p not in {"function-after", "function-before"}))
    if isinstance(ctx_err, KeyedError):
        full = f"{key}.{ctx_err.key}" if ctx_err.relative and key else ctx_err.key
        return f"{prefix}:{full}: {ctx_err}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (typo?)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "string_pattern_mismatch" and first["ctx"]["pattern"] == DNS_LABEL:
        msg = f"{first['input']!r} is not a DNS label (lowercase letters, digits and '-')"
    more = len(err.errors()) - 1
    suffix = f" (+{more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{prefix}:{key}: {msg}{suffix}" if key else f"{prefix}: {msg}{suffix}"


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings recursively, everything else replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
