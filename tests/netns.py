"""Private namespaces for what binds every interface (Ray's HAProxy ingress opens its stats and
metrics ports on 0.0.0.0, with no host setting): like a pod, the command gets a network of its
own, loopback only, so nothing it opens is reachable from this machine's network.

Needs `unshare` (util-linux) and unprivileged user namespaces; `available()` says whether they
work here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

UNSHARE = ["unshare", "--user", "--map-root-user", "--net"]


def argv(
    command: Sequence[str], *, private_dirs: Sequence[str] = (), own_pids: bool = False
) -> list[str]:
    """`command` in a new network namespace with loopback up. `private_dirs`: empty tmpfs mounts
    only this command sees (a pod's emptyDir). `own_pids`: a PID namespace whose init is
    `command`, so every process it starts ends when it exits."""
    flags = list(UNSHARE)
    if private_dirs:
        flags.append("--mount")
    if own_pids:
        flags += ["--pid", "--fork", "--mount-proc"] if private_dirs else ["--pid", "--fork"]
    setup = ["ip link set lo up"]
    setup += [f"mkdir -p {d} && mount -t tmpfs tmpfs {d}" for d in private_dirs]
    script = " && ".join(setup) + ' && exec "$0" "$@"'
    return [*flags, "sh", "-c", script, *command]


def available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = argv(["true"], private_dirs=["/tmp"], own_pids=True)  # /tmp: exists already
    return subprocess.run(probe, capture_output=True).returncode == 0
