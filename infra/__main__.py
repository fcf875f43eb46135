"""Pulumi entry point: read the stack config once, validate it, build the three layers.

Pulumi runs this folder as a script (`main: infra/` in Pulumi.yaml), so `sys.path[0]` is
`infra/` itself: swap it for the project root so `import infra` works with or without the
editable install, and so that `infra/*.py` never shadows a top-level module of the same name.
"""

import sys
from pathlib import Path

_INFRA = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _INFRA]
sys.path.insert(0, str(_INFRA.parent))

import pulumi  # noqa: E402

from gantry.errors import ConfigError  # noqa: E402
from gantry.stack import GantryConfig, load_config  # noqa: E402
from gantry.validation import NAMESPACE  # noqa: E402
from infra.program import build  # noqa: E402

_config = pulumi.Config(NAMESPACE)
_raw = {key: _config.get_object(key) for key in GantryConfig.model_fields}
try:
    _cfg = load_config({k: v for k, v in _raw.items() if v is not None})
    build(_cfg)
except ConfigError as err:
    # RunError: a clean one-line failure instead of a traceback.
    raise pulumi.RunError(str(err)) from None
