"""Gantry's engine-neutral core: what the platform is, independent of who runs it.

The stack, teams and pool models, the service spec, the canary policy as a pure state machine,
the one error type and the project root. It imports neither Pulumi nor Ray: `infra/` (the Pulumi
program), `sandbox/` (local Ray) and `loadtests/` all build on it; `gantry.cli` is the command
line that loads those engines only when a command needs them.
"""
