"""Pulumi entry point: read the stack config once, validate it, build the three layers."""

import pulumi

from infra.config import NAMESPACE, ConfigError, GantryConfig, load_config
from infra.program import build

_config = pulumi.Config(NAMESPACE)
_raw = {key: _config.get_object(key) for key in GantryConfig.model_fields}
try:
    _cfg = load_config({k: v for k, v in _raw.items() if v is not None})
except ConfigError as err:
    # RunError: a clean one-line failure instead of a traceback.
    raise pulumi.RunError(str(err)) from None

build(_cfg)
