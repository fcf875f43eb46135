"""Images: tagged by content, so only a changed service is rebuilt; Docker missing is said first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from infra.serving import preflight as pf
from infra.serving.images import ImageArgs, build_command, content_hash
from infra.serving.spec import load_service
from tests.conftest import stack_config


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
    kind = ImageArgs(spec=spec, target="kind", kind_cluster="gantry-sandbox")
    ref = f"gantry/classifier:{kind.tag}"
    assert build_command(kind, ref) == (
        f"docker build -f services/classifier/Dockerfile -t {ref} . && "
        f"kind load docker-image {ref} --name gantry-sandbox"
    )
    pushed = ImageArgs(spec=spec, target="registry", registry="r.example/x")
    assert build_command(pushed, "r.example/x/" + ref, "login").endswith(
        f"&& docker push r.example/x/{ref}"
    )
    assert build_command(pushed, ref, "login").startswith("login && docker build")


def test_up_without_docker_says_so_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pf, "load_stack", lambda stack: stack_config("eks"))
    monkeypatch.setattr("infra.cli_support.shutil.which", lambda name: None)
    with pytest.raises(typer.Exit) as exit_:
        pf.preflight("eks", "up")
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert "`docker` is not installed" in err and "builds the service images" in err
