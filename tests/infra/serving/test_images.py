"""Images: tagged by content, so only a changed service is rebuilt; Docker missing is said first."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import typer

from gantry.service import load_service
from gantry.stack import GantryConfig, load_config, read_stack_file
from infra import preflight as pf
from infra.cluster import ImageTarget
from infra.cluster.eks import AMI_TYPES, IMAGE_PLATFORM
from infra.render import ResourceIndex, run_offline
from infra.serving.images import ImageArgs, build_command, content_hash
from tests.conftest import REPO, stack_config

RunConfig = Callable[[GantryConfig, str], ResourceIndex]


def test_tag_changes_only_when_the_service_files_change(services_dir: Callable[..., Path]) -> None:
    root = services_dir("svc")
    before = content_hash(load_service("svc", None, root), root.parent)
    assert content_hash(load_service("svc", None, root), root.parent) == before
    (root / "svc" / "app.py").write_text("print('v2')\n")
    after = content_hash(load_service("svc", None, root), root.parent)
    assert after != before
    (root / "svc" / "__pycache__").mkdir()
    (root / "svc" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert content_hash(load_service("svc", None, root), root.parent) == after
    # Models a dev replica builds locally are outputs, not inputs: no new tag, no new canary.
    (root / "svc" / "artifacts").mkdir()
    (root / "svc" / "artifacts" / "model.onnx").write_bytes(b"\0")
    assert content_hash(load_service("svc", None, root), root.parent) == after


def test_build_commands() -> None:
    spec = load_service("classifier")
    kind = ImageArgs(spec=spec, target=ImageTarget("kind", kind_cluster="gantry-sandbox"))
    ref = f"gantry/classifier:{kind.tag}"
    assert build_command(kind, ref) == (
        f"docker build -f services/classifier/Dockerfile -t {ref} . && "
        f"kind load docker-image {ref} --name gantry-sandbox"
    )
    pushed = ImageArgs(spec=spec, target=ImageTarget("registry", registry="r.example/x"))
    assert build_command(pushed, "r.example/x/" + ref, "login").startswith("login && ")
    assert f"docker push r.example/x/{ref}" in build_command(pushed, "r.example/x/" + ref)


def test_platform_is_part_of_the_build_and_of_the_tag() -> None:
    spec = load_service("classifier")
    local = ImageArgs(spec=spec, target=ImageTarget("kind", kind_cluster="k"))
    amd64 = ImageArgs(
        spec=spec, target=ImageTarget("registry", registry="r", platform="linux/amd64")
    )
    assert "--platform" not in build_command(local, "ref")  # kind: this machine's architecture
    assert "docker build --platform linux/amd64 -f " in build_command(amd64, "ref")
    # One tag names one image: an image built for another platform gets another tag.
    assert amd64.tag != local.tag
    assert local.tag == content_hash(spec, local.repo)


def _image_commands(index: ResourceIndex) -> list[Any]:
    return [r for r in index.of_type("command:local:Command") if r.name.endswith("-image-build")]


def test_eks_images_are_built_for_the_nodes_architecture(
    program: Callable[[str], ResourceIndex],
) -> None:
    # Every AMI type the EKS pools use is x86_64: an image built on an arm64 laptop would not run.
    assert all("x86_64" in ami for ami in AMI_TYPES.values())
    assert IMAGE_PLATFORM == "linux/amd64"
    eks = _image_commands(program("eks"))
    assert eks
    for cmd in eks:
        assert f"docker build --platform {IMAGE_PLATFORM} " in cmd.inputs["create"]
    for cmd in _image_commands(program("sandbox")):
        assert "--platform" not in cmd.inputs["create"]


# A stand-in for docker: logs its calls to $FAKE_DOCKER_LOG; `manifest inspect` succeeds when
# the ref is listed in $FAKE_REGISTRY (the registry's tags) and `push` appends to it, failing if
# the tag is there already, as an IMMUTABLE ECR repository does.
FAKE_DOCKER = r"""#!/bin/sh
echo "$*" >> "$FAKE_DOCKER_LOG"
ref=$(eval "printf '%s' \"\${$#}\"")
touch "$FAKE_REGISTRY"
case "$1 $2" in
  "manifest inspect") grep -qxF "$ref" "$FAKE_REGISTRY" && echo '{}' ;;
  "push "*)
    if grep -qxF "$2" "$FAKE_REGISTRY"; then
      echo "tag invalid: The image tag '$2' already exists and cannot be overwritten" >&2; exit 1
    fi
    echo "$2" >> "$FAKE_REGISTRY" ;;
  *) exit 0 ;;
esac
"""


def test_eks_image_target_comes_from_the_cluster_layer(run_config: RunConfig) -> None:
    """Layer 3 reads where images go from ClusterOutputs.images: `eks.image_registry` means a
    plain push there (no ECR repository, no AWS provider of its own); without it, ECR through the
    cluster's own AWS provider."""
    raw = copy.deepcopy(read_stack_file(REPO / "Pulumi.eks.yaml"))
    raw["cluster"]["eks"]["image_registry"] = "registry.example/team"
    index = run_config(load_config(raw), "eks-registry")
    for cmd in _image_commands(index):
        assert "docker push registry.example/team/gantry/" in cmd.inputs["create"]
        assert "docker login" not in cmd.inputs["create"]
    assert not index.of_type("aws:ecr/repository:Repository")
    default = run_offline(stack_config("eks"), "eks")
    # One AWS provider, the cluster's: the serving layer makes none.
    (aws_provider,) = default.of_type("pulumi:providers:aws")
    assert aws_provider.layer == "cluster"
    assert default.of_type("aws:ecr/repository:Repository")


def _run_push(tmp_path: Path, command: str, registry: list[str]) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "registry").write_text("".join(f"{r}\n" for r in registry))
    log = tmp_path / "docker.log"
    log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_REGISTRY": str(tmp_path / "registry"),
    }
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=30
    )
    return done.returncode, [" ".join(line.split()[:2]) for line in log.read_text().splitlines()]


def test_push_to_an_immutable_registry_is_skipped_when_the_tag_is_there(tmp_path: Path) -> None:
    args = ImageArgs(
        spec=load_service("classifier"), target=ImageTarget("registry", registry="r.example/x")
    )
    ref = f"r.example/x/gantry/classifier:{args.tag}"
    command = build_command(args, ref, "echo logged-in >&2")
    # A re-run (another checkout, a changed command) finds the tag: no build, no failing push.
    assert _run_push(tmp_path, command, [ref]) == (0, ["manifest inspect"])
    # Not in the registry yet: built and pushed.
    assert _run_push(tmp_path, command, []) == (
        0,
        ["manifest inspect", "build -f", "push " + ref],
    )


def test_kind_images_are_loaded_again_into_a_replaced_cluster() -> None:
    cfg = stack_config("sandbox")

    def run(kubeconfig: str) -> dict[str, Any]:
        # A new kind cluster prints a new kubeconfig (new CA and keys); the image tags stay.
        hook = {"command:local:Command": lambda a: {"stdout": kubeconfig}}
        index = run_offline(cfg, "sandbox", hooks=hook)
        return {c.name: c.inputs["triggers"] for c in _image_commands(index)}

    first, same, replaced = run("kubeconfig-1"), run("kubeconfig-1"), run("kubeconfig-2")
    assert first and first == same
    for name, triggers in replaced.items():
        assert triggers[0] == first[name][0]  # the content hash: unchanged
        assert triggers != first[name]  # ... but the Command is replaced: build and load again


def test_cluster_revision_is_not_secret() -> None:
    from infra.cluster.kind import cluster_revision

    @pulumi.runtime.test
    def check() -> pulumi.Output[None]:
        revision = cluster_revision(pulumi.Output.secret("kubeconfig"))
        return pulumi.Output.all(revision, pulumi.Output.is_secret(revision)).apply(
            lambda v: None if (len(v[0]) == 12 and not v[1]) else pytest.fail(str(v))
        )

    check()


def test_up_without_docker_says_so_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pf, "load_stack", lambda stack: stack_config("eks"))
    monkeypatch.setattr("gantry.console.shutil.which", lambda name: None)
    with pytest.raises(typer.Exit) as exit_:
        pf.preflight("eks", "up")
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert "`docker` is not installed" in err and "builds the service images" in err
