"""Real Helm, offline: the pinned chart archives, rendered by Helm's own engine.

`helm-python-sdk` bundles Helm v4's Go SDK, so `helm template` semantics (values coalescing,
subchart conditions, `crds/`, hooks) are Helm's, not ours. `archives` finds and verifies the
pinned archives; `template` renders one release into the objects it would create.
"""
