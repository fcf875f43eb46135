"""Embedder: OpenAI-compatible `POST /v1/embeddings` on Ray Serve (all-MiniLM-L6-v2, 384 dims).

Routes (relative to the application's route_prefix, "/" in serve.yaml):
  POST /v1/embeddings  {"input": str | [str], "model"?: str, "encoding_format"?: "float"|"base64"}
                       -> {"object": "list", "model", "usage": {"prompt_tokens", "total_tokens"},
                           "data": [{"object": "embedding", "index", "embedding"}]}
  GET  /v1/models      OpenAI model list (one model)
  GET  /ready          readiness: 200 {"ready": true, ...} once the model is loaded and a warm-up
                       inference passed, else 503. Probe this path.
  GET  /openapi.json   the OpenAPI document, /docs the UI.
Errors are OpenAI-style JSON `{"error": {"message", "type", "param", "code"}}`: 400 invalid JSON,
413 body over limits.max_body_bytes, 422 schema or limit violations (empty input, too many items,
empty or over-long strings, wrong types), 503 not ready, 500 only for injected faults or bugs.

Versions (same image, chosen by the `version` init arg): `v1` PyTorch (fp32 CPU / fp16 CUDA),
`v2` ONNX Runtime on the same weights (cosine >= 0.99 to v1, tested). Device: CUDA when available
unless `device: cpu`, else CPU; logged and exported as the `device` metric label.

Knobs (`user_config`, applied live in `reconfigure()`): see EmbedderKnobs and
services/common/knobs.py (batching, limits, test-only faults).

Building the app:
  serve.yaml:   import_path: services.embedder.app:build_app   args: {version: v1}
  Python:       build_app(EmbedderArgs(version="v2"))
  Each version runs as its own Serve application; the sandbox's gateway (or Istio on the cluster)
  splits traffic between them.
"""

# No `from __future__ import annotations`: Serve pickles the deployment class by value, and the
# route closures' string annotations would then not resolve (FastAPI saw bodies as query params).
import base64
from typing import Literal, cast

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from ray import serve
from ray.serve import Application, Deployment

from services.common.errors import ApiError, openai_error
from services.common.http import ServiceCore
from services.common.knobs import Knobs
from services.common.replica import ModelReplica
from services.embedder.model import (
    DIMENSIONS,
    MODEL_NAME,
    DevicePref,
    Version,
    count_tokens,
    load_encoder,
    load_tokenizer,
)

SERVICE = "embedder"
WARMUP = ["Gantry warms the embedder up.", "A second, somewhat longer warm-up sentence."]


class EmbedderArgs(BaseModel):
    """Init args (serve.yaml `args`): fixed for the life of a replica."""

    model_config = ConfigDict(extra="forbid")
    version: Version = "v1"
    device: DevicePref = "auto"
    # torch / ONNX Runtime intra-op threads per replica; match ray_actor_options.num_cpus.
    num_threads: int = Field(default=1, ge=1, le=64)


class EmbedderKnobs(Knobs):
    # Most sentences per forward pass after sorting a batch by length, split evenly (10 in
    # buckets of 8 run as 5 + 5); 0 = the whole batch at once. Smaller buckets pad less when
    # lengths are mixed; each forward pass has a fixed cost (docs/performance.md).
    bucket_size: int = Field(default=0, ge=0, le=1024)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: StrictStr | list[StrictStr] = Field(description="Text or list of texts to embed.")
    model: StrictStr | None = Field(
        default=None, description=f"Ignored; this service serves {MODEL_NAME}."
    )
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "gantry"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def check_limits(texts: list[str], knobs: Knobs, single: bool = False) -> None:
    """Runtime limits from user_config; errors name the offending item (`input` if a string)."""
    limits = knobs.limits
    if not texts:
        raise ApiError(422, "input: must contain at least one string", param="input")
    if len(texts) > limits.max_items:
        raise ApiError(
            422, f"input: {len(texts)} items, limit is {limits.max_items}", param="input"
        )
    for i, text in enumerate(texts):
        where = "input" if single else f"input[{i}]"
        if not text.strip():
            raise ApiError(422, f"{where}: must not be empty", param=where)
        if len(text) > limits.max_chars:
            raise ApiError(
                422, f"{where}: {len(text)} characters, limit is {limits.max_chars}", param=where
            )


@serve.deployment(max_ongoing_requests=64, graceful_shutdown_timeout_s=20)
class Embedder(ModelReplica):
    knobs_model = EmbedderKnobs

    def __init__(self, args: EmbedderArgs | dict | None = None) -> None:
        args = EmbedderArgs.model_validate(args or {})
        self.encoder = load_encoder(args.version, args.device, args.num_threads)
        self.tokenizer = load_tokenizer()
        self.core = ServiceCore(
            SERVICE, args.version, self.encoder.device, EmbedderKnobs(), openai_error
        )
        self.embed = self.batcher(self.embed_batch)
        self.apply_knobs(self.core.knobs)
        self.build_api()
        warm = self.encoder.encode(WARMUP, 0)
        if warm.shape != (len(WARMUP), DIMENSIONS) or not np.isfinite(warm).all():
            raise RuntimeError(f"embedder {args.version}: warm-up produced {warm.shape}")
        self.core.mark_ready()

    async def embed_batch(self, requests: list[list[str]]) -> list[tuple[np.ndarray, int]]:
        """One model call for every request waiting in `self.embed` (a ModelBatcher)."""
        flat = [text for texts in requests for text in texts]
        knobs = self.core.knobs
        assert isinstance(knobs, EmbedderKnobs)
        with self.core.metrics.model_call(len(requests)):
            vectors = await self.run_model(self.encoder.encode, flat, knobs.bucket_size)
        tokens = count_tokens(self.tokenizer, flat)
        out, start = [], 0
        for texts in requests:
            end = start + len(texts)
            out.append((vectors[start:end], sum(tokens[start:end])))
            start = end
        return out

    async def embeddings(self, req: EmbeddingRequest) -> EmbeddingResponse:
        texts = [req.input] if isinstance(req.input, str) else req.input
        check_limits(texts, self.core.knobs, single=isinstance(req.input, str))
        vectors, tokens = await self.embed(texts)
        if not np.isfinite(vectors).all():
            raise ApiError(500, "model produced non-finite values", code="internal")
        data = [
            Embedding(index=i, embedding=encode_vector(v, req.encoding_format))
            for i, v in enumerate(vectors)
        ]
        return EmbeddingResponse(
            data=data, model=MODEL_NAME, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
        )

    def build_api(self) -> FastAPI:
        """This replica's HTTP app (served by `__call__`, see ModelReplica)."""
        app = self.core.build_api(
            "Gantry embedder", f"OpenAI-compatible embeddings with {MODEL_NAME}."
        )

        # Routes are closures, not bound methods: FastAPI resolves annotations via __globals__.
        @app.post("/v1/embeddings", response_model=EmbeddingResponse)
        async def embeddings(req: EmbeddingRequest) -> EmbeddingResponse:
            return await self.embeddings(req)

        @app.get("/v1/models", response_model=ModelList)
        async def models() -> ModelList:
            return ModelList(data=[ModelCard(id=MODEL_NAME)])

        return app


def encode_vector(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


def build_app(args: EmbedderArgs) -> Application:
    """Serve application builder used by serve.yaml (`args` are validated as EmbedderArgs)."""
    return cast(Deployment, Embedder).bind(args)  # the decorator returns a Deployment
