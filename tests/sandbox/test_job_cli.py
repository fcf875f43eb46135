"""`gantry job` without a running sandbox: expected failures are one line with exit 2 (a bad
job, a bad override, no sandbox), `list` says there is nothing yet, and `render` prints the
RayJob a cluster would queue."""

from __future__ import annotations

from pathlib import Path

import yaml
from sandbox_helpers import gantry


def test_bad_input_and_no_sandbox_are_one_line_exit_2(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    for args, message in [
        (["run", "nope"], "error: no job 'nope' (jobs/nope/job.yaml does not exist); jobs: ["),
        (["run", "digits", "--set", "lr=fast"], "error: --set lr='fast': job 'digits' has lr"),
        (["run", "digits", "--set", "lr"], "error: --set 'lr': expected KEY=VALUE"),
        (["run", "digits"], "error: the sandbox is not running"),
        (["stop", "digits"], "error: the sandbox is not running"),
    ]:
        r = gantry("job", *args, *state, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith(message), (args, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
    r = gantry("job", "list", *state, timeout=60)
    assert r.returncode == 0 and "No jobs yet" in r.stdout


def test_render_prints_the_queued_rayjob() -> None:
    r = gantry("job", "render", "digits", timeout=120)
    assert r.returncode == 0, r.stderr
    rayjob = yaml.safe_load(r.stdout)
    assert rayjob["kind"] == "RayJob" and rayjob["metadata"]["namespace"] == "ml-research"
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
    assert rayjob["spec"]["entrypoint"] == "python -m jobs.digits.train"
