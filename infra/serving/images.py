"""A service's container image: built with Docker, then loaded into kind or pushed to a registry.

The tag is a hash of everything the image is built from (the service folder, the shared service
code, the Dockerfile and build args), so an unchanged service is never rebuilt and a changed one
gets a new tag, which changes the Deployment and starts a canary.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_command as command

from gantry import project
from gantry.service import ServiceSpec
from infra.cluster import ImageTarget

# Files outside the service folder that every image contains (shared service code).
SHARED_INPUTS = ("services/__init__.py", "services/common", "pyproject.toml")
# Not inputs: caches, and `artifacts/` (models a dev replica builds locally; the image builds its
# own). Keep in step with .dockerignore.
_SKIP = {"__pycache__", ".pytest_cache", ".mypy_cache", "artifacts"}


def inputs_hash(roots: Iterable[Path], repo: Path, extra: Iterable[str] = ()) -> str:
    """sha256 over the paths and bytes of every file under `roots`, then `extra` (12 hex
    digits): an image tag that changes exactly when what the image is built from changes."""
    h = hashlib.sha256()
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if _SKIP.intersection(f.parts) or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(repo) if f.is_relative_to(repo) else f).encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:12]


def content_hash(spec: ServiceSpec, repo: Path | None = None, platform: str | None = None) -> str:
    """The service image's tag: every file it is built from, its build args and Dockerfile, and
    the target platform if one is set (the registry check trusts a tag to name one image)."""
    repo = repo or project.root()
    roots = [spec.directory, *(repo / p for p in SHARED_INPUTS)]
    extra = [repr(sorted(spec.image.build_args.items())), spec.image.dockerfile]
    return inputs_hash(roots, repo, [*extra, *([platform] if platform else [])])


@dataclass(frozen=True)
class ImageArgs:
    spec: ServiceSpec
    target: ImageTarget  # the cluster layer's ClusterOutputs.images
    depends_on: list[pulumi.Resource] = field(default_factory=list)

    @property
    def repo(self) -> Path:
        """The build context: the project holding `services/` (the repository root)."""
        return self.spec.directory.parent.parent

    @property
    def tag(self) -> str:
        return content_hash(self.spec, self.repo, self.target.platform)

    def ref(self) -> pulumi.Output[str]:
        name = f"{self.spec.image.repository}:{self.tag}"
        registry = self.target.registry
        if registry is None:
            return pulumi.Output.from_input(name)
        return pulumi.Output.from_input(registry).apply(lambda r: f"{r.rstrip('/')}/{name}")


def build_command(args: ImageArgs, ref: str, login: str | None = None) -> str:
    """The shell command that builds the image and makes it available to the cluster."""
    spec = args.spec
    q = shlex.quote(ref)
    dockerfile = (spec.directory / spec.image.dockerfile).relative_to(args.repo)
    build_args = "".join(
        f" --build-arg {shlex.quote(f'{k}={v}')}" for k, v in sorted(spec.image.build_args.items())
    )
    target = args.target
    platform = f" --platform {shlex.quote(target.platform)}" if target.platform else ""
    # The build context is the repository root: images contain services/common as well.
    build = f"docker build{platform} -f {shlex.quote(str(dockerfile))}{build_args} -t {q} ."
    if target.mode == "kind":
        cluster = shlex.quote(str(target.kind_cluster))
        return f"{build} && kind load docker-image {q} --name {cluster}"
    if target.mode == "local":
        return build
    # The tag is the content hash, so a tag already in the registry is this image: skip the build
    # and the push, which an IMMUTABLE repository would refuse (the command re-runs whenever any
    # input changes, e.g. `dir` in another checkout). `docker manifest inspect` reads the registry
    # with the login's credentials (OCI indexes since Docker CLI 23).
    skip = shlex.quote(f"{ref} is already in the registry: not built or pushed again")
    push = (
        f"if docker manifest inspect {q} >/dev/null 2>&1; then echo {skip} >&2;"
        f" else {build} && docker push {q}; fi"
    )
    return f"{login} && {push}" if login else push


class ServiceImage(pulumi.ComponentResource):
    """Build (and load or push) one service's image; rebuilt only when its content hash changes."""

    def __init__(self, name: str, args: ImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:serving:ServiceImage", name, None, opts)
        self.ref: pulumi.Output[str] = args.ref()
        target = args.target
        depends_on = list(args.depends_on)
        if target.ecr_provider is not None:
            # Tags are content hashes, so they never need to move: make them immutable.
            depends_on.append(
                aws.ecr.Repository(
                    f"{name}-ecr",
                    name=args.spec.image.repository,
                    image_tag_mutability="IMMUTABLE",
                    image_scanning_configuration={"scan_on_push": True},
                    force_delete=True,
                    opts=pulumi.ResourceOptions(parent=self, provider=target.ecr_provider),
                )
            )
        create = pulumi.Output.all(self.ref, target.login).apply(
            lambda v: build_command(args, v[0], v[1])
        )
        # Replaced (so run again) when a trigger changes: a new content hash, or, for kind, a new
        # cluster whose nodes do not have the image yet.
        triggers: list[pulumi.Input[str]] = [args.tag]
        if target.cluster_revision is not None:
            triggers.append(target.cluster_revision)
        self.build = command.local.Command(
            f"{name}-build",
            create=create,
            # Absolute, so it differs between checkouts; pulumi-command then re-runs `create` as an
            # update (only `triggers` replace), which the registry command makes harmless.
            dir=str(args.repo),
            triggers=triggers,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.register_outputs({"ref": self.ref})
