"""jobs/Dockerfile (parsed, no Docker here) and the requirements it installs: the services'
image rules, and every job's module inside the image at the project root's paths."""

from __future__ import annotations

import io
import re

import yaml
from dockerfile_parse import DockerfileParser

from tests.services.raylocal import REPO
from tests.test_dependencies import DEV_LOCK, read_pins, split

DOCKERFILE = REPO / "jobs" / "Dockerfile"
REQUIREMENTS = REPO / "jobs" / "requirements.txt"


def parse() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def instructions(name: str) -> list[dict]:
    return [i for i in parse().structure if i["instruction"] == name]


def test_multi_stage_pinned_and_non_root() -> None:
    froms = [i["value"].split()[0] for i in instructions("FROM")]
    assert len(froms) == 2
    for image in froms:
        assert re.search(r":\d+\.\d+\.\d+-", image), f"{image} is not pinned to a version"
    last_from = max(i["startline"] for i in instructions("FROM"))
    (user,) = [i for i in instructions("USER") if i["startline"] > last_from]
    assert user["value"].split(":")[0] not in ("root", "0")
    assert [i["value"] for i in instructions("WORKDIR")][-1] == "/app"


def test_installs_the_locked_requirements_with_hashes() -> None:
    runs = " ".join(i["value"] for i in instructions("RUN"))
    assert "--require-hashes" in runs and "-r /tmp/requirements.txt" in runs
    assert "jobs/requirements.txt" in " ".join(i["value"] for i in instructions("COPY"))
    dev, pins = read_pins(DEV_LOCK), read_pins(REQUIREMENTS)
    for name, (version, hashes) in pins.items():
        assert dev.get(name) == (version, hashes), f"{name}=={version}: not the lock's (make lock)"
    for line in REQUIREMENTS.with_suffix(".in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert split(line)[0] in pins, f"requirements.in: {line} missing from the .txt"


def test_every_jobs_module_is_in_the_image() -> None:
    copied = [i["value"].split()[-1] for i in instructions("COPY") if "--from" not in i["value"]]
    for job_file in sorted(REPO.glob("jobs/*/job.yaml")):
        module = yaml.safe_load(job_file.read_text())["module"]
        path = module.replace(".", "/") + ".py"
        assert (REPO / path).is_file(), f"{job_file.parent.name}: no {path}"
        assert any(path.startswith(c.rstrip("/") + "/") for c in copied), f"{path} not copied"
