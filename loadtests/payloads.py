"""Request mixes and response checks for each service, without Locust (unit-tested as is).

The response models mirror services/*/app.py, which cannot be imported here: they import ray,
and this module runs in the Locust (gevent) process.

Mixes follow what callers of such services send: mostly small requests with a long tail of big
batches, texts of very different lengths (padding cost depends on the longest text in a batch).
"""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

# Endpoints, and the `name=` each is grouped under in Locust's statistics.
EMBED_PATH = "/v1/embeddings"
PREDICT_PATH = "/v1/models/classifier:predict"


class Mix(NamedTuple):
    """One request mix: items per request by bucket (upper bound, weight) and, for the
    embedder, words per text (min, max)."""

    batches: tuple[tuple[int, float], ...]
    words: tuple[int, int] = (0, 0)


# The scenario's `payload` picks one of these per service.
EMBED_MIXES = {
    # Bulk and online together: singles dominate, a tail of 64-passage batches of up to 120
    # words. Capacity, not latency: one 64-passage request alone costs ~1.5 s of a CPU core.
    "mixed": Mix(((1, 0.45), (4, 0.25), (16, 0.2), (64, 0.1)), words=(3, 120)),
    # Online queries (search, retrieval): 1-4 short texts per request, the traffic a p99
    # latency SLO of hundreds of ms is written for.
    "queries": Mix(((1, 0.8), (4, 0.2)), words=(3, 40)),
}
CLASSIFY_MIXES = {
    "mixed": Mix(((1, 0.5), (8, 0.3), (32, 0.2))),  # instances per request (1..32)
    "queries": Mix(((1, 0.8), (8, 0.2))),
}

M = TypeVar("M", bound=BaseModel)

_WORDS = (
    "the a model request replica latency cluster node pool canary rollout traffic weight "
    "scale serve batch token embedding vector sentence search query document answer user "
    "platform metric alert budget version deploy stable primary service gateway route "
    "quick brown fox jumps over lazy dog river mountain city summer winter coffee music"
)
_VOCAB = _WORDS.split()


def _pick_size(rng: random.Random, buckets: tuple[tuple[int, float], ...]) -> int:
    """A batch size: a bucket's upper bound drawn by weight, then uniform within the bucket."""
    uppers = [b for b, _ in buckets]
    upper = rng.choices(uppers, weights=[w for _, w in buckets])[0]
    lower = max([b for b in uppers if b < upper], default=0) + 1
    return rng.randint(lower, upper)


def embed_request(rng: random.Random, mix: str = "mixed") -> dict[str, Any]:
    m = EMBED_MIXES[mix]
    n = _pick_size(rng, m.batches)
    texts = [" ".join(rng.choices(_VOCAB, k=rng.randint(*m.words))) for _ in range(n)]
    return {"input": texts[0] if n == 1 and rng.random() < 0.5 else texts, "model": "embedder"}


def classify_request(rng: random.Random, n_features: int, mix: str = "mixed") -> dict[str, Any]:
    """Rows of `n_features` measurements in cm (the classifier's iris features: 4)."""
    n = _pick_size(rng, CLASSIFY_MIXES[mix].batches)
    rows = [[round(rng.uniform(0.1, 8.0), 1) for _ in range(n_features)] for _ in range(n)]
    return {"instances": rows}


class _Embedding(BaseModel):
    object: str
    index: int
    embedding: list[float]


class EmbeddingsResponse(BaseModel):
    object: str
    data: list[_Embedding]
    model: str
    usage: dict[str, int]


class PredictResponse(BaseModel):
    predictions: list[int]  # class indexes


def _parse(model: type[M], status: int, body: str) -> M | str:
    if status != 200:
        return f"HTTP {status}: {body[:120]}"
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError) as err:
        return f"bad response body: {str(err).splitlines()[0][:160]}"


def check_embeddings(request: dict[str, Any], status: int, body: str) -> str | None:
    """None when the response is a valid answer to `request`, else why not (one line)."""
    got = _parse(EmbeddingsResponse, status, body)
    if isinstance(got, str):
        return got
    n = 1 if isinstance(request["input"], str) else len(request["input"])
    if len(got.data) != n:
        return f"{len(got.data)} embeddings for {n} inputs"
    if sorted(e.index for e in got.data) != list(range(n)):
        return "embedding indexes are not 0..n-1"
    dims = {len(e.embedding) for e in got.data}
    if len(dims) != 1 or 0 in dims:
        return f"embedding dimensions differ or are empty: {sorted(dims)}"
    return None


def check_predictions(request: dict[str, Any], status: int, body: str) -> str | None:
    got = _parse(PredictResponse, status, body)
    if isinstance(got, str):
        return got
    if len(got.predictions) != len(request["instances"]):
        return f"{len(got.predictions)} predictions for {len(request['instances'])} instances"
    return None
