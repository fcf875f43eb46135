"""Container rules, checked by parsing each Dockerfile with dockerfile-parse (no Docker here)."""

from __future__ import annotations

import io
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "embedder/Dockerfile": "embedder",
    "embedder/Dockerfile.cuda": "embedder",
    "classifier/Dockerfile": "classifier",
}
BUILD_STEP = {
    "embedder": "python -m services.embedder.export_onnx",
    "classifier": "python -m services.classifier.train",
}


def parse(rel: str) -> DockerfileParser:
    with open(REPO / "services" / rel, "rb") as f:
        return DockerfileParser(fileobj=io.BytesIO(f.read()))


def instructions(rel: str, name: str) -> list[dict]:
    return [i for i in parse(rel).structure if i["instruction"] == name]


@pytest.mark.parametrize("rel", DOCKERFILES)
def test_multi_stage_with_pinned_bases(rel: str) -> None:
    froms = [i["value"].split()[0] for i in instructions(rel, "FROM")]
    assert len(froms) >= 2, f"{rel}: expected a build and a runtime stage"
    for image in froms:
        name, _, tag = image.rpartition(":")
        assert name and tag, f"{rel}: base {image} has no tag"
        assert tag != "latest", f"{rel}: base {image} uses latest"
        assert re.search(r"\d+\.\d+", tag), f"{rel}: base {image} is not pinned to a version"
    runtime = parse(rel).content.split("FROM ")[-1]
    assert "--from=build" in runtime, f"{rel}: runtime stage copies nothing from the build stage"


@pytest.mark.parametrize("rel", DOCKERFILES)
def test_runs_as_non_root(rel: str) -> None:
    users = [i["value"].strip() for i in instructions(rel, "USER")]
    assert users, f"{rel}: no USER"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0"), f"{rel}: runs as {final_user}"
    # The USER must come after the last FROM, i.e. apply to the runtime stage.
    structure = parse(rel).structure
    last_from = max(i["startline"] for i in structure if i["instruction"] == "FROM")
    assert max(i["startline"] for i in structure if i["instruction"] == "USER") > last_from


@pytest.mark.parametrize("rel", DOCKERFILES)
def test_model_baked_at_build(rel: str) -> None:
    service = DOCKERFILES[rel]
    runs = " ".join(i["value"] for i in instructions(rel, "RUN"))
    assert BUILD_STEP[service] in runs, f"{rel}: the model artifact is not built in the image"
    content = parse(rel).content
    assert "HF_HUB_OFFLINE=1" in content or service != "embedder"
    assert "huggingface.co" not in content


@pytest.mark.parametrize("rel", DOCKERFILES)
def test_entrypoint_serve_runs_serve_yaml_and_drains(rel: str) -> None:
    service = DOCKERFILES[rel]
    (entry,) = instructions(rel, "ENTRYPOINT")
    argv = json.loads(entry["value"])
    script = REPO / argv[0].removeprefix("/app/")
    assert argv[1:] == [f"services/{service}/serve.yaml"]
    assert re.search(r'^exec serve run .*"\$config"$', script.read_text(), re.M)
    # `serve run` drains (serve.shutdown()) on SIGINT only, so the image must stop with SIGINT.
    (stop,) = instructions(rel, "STOPSIGNAL")
    assert stop["value"].strip() == "SIGINT"
    serve = yaml.safe_load((REPO / "services" / service / "serve.yaml").read_text())
    for dep in serve["applications"][0]["deployments"]:
        assert dep["graceful_shutdown_timeout_s"] > 0


def test_cuda_image_uses_cuda_wheels_at_the_same_versions() -> None:
    runs = " ".join(i["value"] for i in instructions("embedder/Dockerfile.cuda", "RUN"))
    assert "download.pytorch.org/whl/cu" in runs and "torch==2.13.0" in runs
    cuda_reqs = (REPO / "services/embedder/requirements-cuda.txt").read_text()
    assert "\nonnxruntime-gpu==1.31.1 " in cuda_reqs and "\ntorch==" not in cuda_reqs
    cpu_runs = " ".join(i["value"] for i in instructions("embedder/Dockerfile", "RUN"))
    assert "download.pytorch.org/whl/cpu" in cpu_runs
    assert "\ntorch==2.13.0+cpu " in (REPO / "services/embedder/requirements.txt").read_text()


@pytest.mark.parametrize("rel", DOCKERFILES)
def test_images_install_the_hashed_requirements(rel: str) -> None:
    """Each image installs its requirements file, generated from the lock (pins and hashes checked
    by tests/test_dependencies.py), in pip's hash-checking mode, and nothing else unpinned."""
    service = DOCKERFILES[rel]
    name = "requirements-cuda.txt" if rel.endswith(".cuda") else "requirements.txt"
    (copy,) = [i for i in instructions(rel, "COPY") if "requirements" in i["value"]]
    assert copy["value"].split()[0] == f"services/{service}/{name}"
    installs = [i["value"] for i in instructions(rel, "RUN") if "pip install" in i["value"]]
    hashed = [cmd for cmd in installs if "-r /tmp/requirements.txt" in cmd]
    assert len(hashed) == 1 and "--require-hashes" in hashed[0], installs
    for cmd in installs:
        assert cmd in hashed or cmd.endswith("torch==2.13.0"), f"{rel}: unpinned install: {cmd}"


@pytest.mark.parametrize("service", ["embedder", "classifier"])
def test_image_requirements_are_declared_in_pyproject(service: str) -> None:
    """What an image installs directly is declared in pyproject.toml, at the same version."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["services"]]
    pins = {r.split("==")[0].split("[")[0]: r.partition("==")[2] for r in declared}
    for path in (REPO / "services" / service).glob("requirements*.in"):
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, _, version = line.partition("==")
            base = name.split("[")[0].removesuffix("-gpu")
            assert base in pins, f"{path.name}: {line} is not declared in pyproject.toml"
            assert version in ("", pins[base]), f"{path.name}: {line} != pyproject's {base}"
