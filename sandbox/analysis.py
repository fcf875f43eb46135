"""The canary checks of a service's `canary.metrics`, as PromQL against the sandbox's Prometheus.

The queries come from the one table of checks (gantry/canary.py, METRIC_CHECKS), the cluster's
Flagger MetricTemplates with them; only the selector differs: on the cluster a canary is a set of
pods, in the sandbox it is the Serve application `<service>-<version>` and the `version` label.
Every query covers the check's `interval` window. A query that fails (after the PromQL client's
retries, sandbox/retry.py) fails its check, as no data does: the canary's threshold then decides.
"""

from __future__ import annotations

import requests

from gantry.canary import METRIC_NAMES, CheckResult, sandbox_query
from gantry.service import MetricCheck, ServiceSpec, duration_s
from sandbox import retry
from sandbox.errors import Unavailable
from sandbox.prometheus import PromQL

__all__ = ["CheckResult", "queries", "run_check"]


def queries(service: str, version: str, window_s: int) -> dict[str, str]:
    """PromQL per metric check name for one version of a service."""
    return {m: sandbox_query(m, service, version, window_s) for m in METRIC_NAMES}


def run_check(prom: PromQL, spec: ServiceSpec, version: str, check: MetricCheck) -> CheckResult:
    query = sandbox_query(check.name, spec.name, version, duration_s(check.interval))
    tr = check.threshold_range
    assert tr is not None  # ServiceSpec fills the SLO-backed ones
    detail: str | None = None
    try:
        value = prom.scalar(query)
    except (Unavailable, requests.RequestException) as err:  # fail closed, and say why
        value, detail = None, f"query failed: {retry.describe(err)}"
    return CheckResult(check.name, value, tr.min, tr.max, detail)
