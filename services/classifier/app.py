"""Classifier: a tabular iris model behind the KServe V1 protocol on Ray Serve.

Routes (relative to the application's route_prefix, "/" in serve.yaml):
  POST /v1/models/classifier:predict  {"instances": [[f0, f1, f2, f3], ...]}
                                      -> {"predictions": [int, ...]}
                                      features: sepal length, sepal width, petal length, petal
                                      width (cm); prediction: class index (0 setosa,
                                      1 versicolor, 2 virginica)
  GET  /v1/models/classifier          KServe model readiness: {"name": "classifier", "ready": bool}
  GET  /v1/models                     {"models": ["classifier"]}
  GET  /ready                         readiness probe: 200 once the model is loaded and a warm-up
                                      prediction passed, else 503. Probe this path.
  GET  /openapi.json                  the OpenAPI document.
Errors are KServe-style JSON `{"error": "<message naming the field>"}`: 400 invalid JSON, 413 body
over limits.max_body_bytes, 422 schema or limit violations (no rows, too many rows, wrong feature
count, non-numeric or non-finite values), 503 not ready, 500 only for injected faults or bugs.

Versions (same image, `version` init arg): v1 logistic regression, v2 random forest, both trained
at image build by services/classifier/train.py. Knobs and metrics as for every service (see
services/common/). Each version runs as its own Serve application; the sandbox's gateway (or
Istio on the cluster) splits traffic between them.
"""

# No `from __future__ import annotations`: Serve pickles the deployment class by value, and the
# route closures' string annotations would then not resolve (FastAPI saw bodies as query params).
from typing import Annotated, Any, cast

import joblib
import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application, Deployment

from services.classifier.train import Version, ensure_model
from services.common.errors import ApiError, kserve_error
from services.common.http import ServiceCore
from services.common.knobs import Knobs
from services.common.replica import ModelReplica

SERVICE = "classifier"
PREDICT_PATH = f"/v1/models/{SERVICE}:predict"

# Bounded: the tree model (v2) casts to float32, where larger values overflow to inf and fail
# inside scikit-learn; any real measurement in cm is far inside this range.
FEATURE_LIMIT = 1e9
Feature = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-FEATURE_LIMIT, le=FEATURE_LIMIT)
]


class ClassifierArgs(BaseModel):
    """Init args (serve.yaml `args`): fixed for the life of a replica."""

    model_config = ConfigDict(extra="forbid")
    version: Version = "v1"


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: list[list[Feature]] = Field(
        description="Rows of [sepal length, sepal width, petal length, petal width] in cm."
    )


class PredictResponse(BaseModel):
    predictions: list[int]


class ModelStatus(BaseModel):
    name: str
    ready: bool


class ModelIndex(BaseModel):
    models: list[str]


def check_rows(rows: list[list[float]], n_features: int, knobs: Knobs) -> None:
    if not rows:
        raise ApiError(422, "instances: must contain at least one row")
    if len(rows) > knobs.limits.max_items:
        raise ApiError(422, f"instances: {len(rows)} rows, limit is {knobs.limits.max_items}")
    for i, row in enumerate(rows):
        if len(row) != n_features:
            raise ApiError(422, f"instances[{i}]: {len(row)} features, expected {n_features}")


@serve.deployment(max_ongoing_requests=64, graceful_shutdown_timeout_s=20)
class Classifier(ModelReplica):
    def __init__(self, args: ClassifierArgs | dict | None = None) -> None:
        args = ClassifierArgs.model_validate(args or {})
        bundle: dict[str, Any] = joblib.load(ensure_model(args.version))
        self.model = bundle["model"]
        self.n_features = len(bundle["features"])
        self.core = ServiceCore(SERVICE, args.version, "cpu", Knobs(), kserve_error)
        self.predict_rows = self.batcher(self.predict_batch)
        self.apply_knobs(self.core.knobs)
        self.build_api()
        warm = self.model.predict(np.zeros((2, self.n_features)))
        if warm.shape != (2,):
            raise RuntimeError(f"classifier {args.version}: warm-up produced {warm.shape}")
        self.core.mark_ready()

    async def predict_batch(self, requests: list[np.ndarray]) -> list[list[int]]:
        """One model call for every request waiting in `self.predict_rows` (a ModelBatcher)."""
        rows = np.concatenate(requests)
        with self.core.metrics.model_call(len(requests)):
            labels = await self.run_model(self.model.predict, rows)
        out, start = [], 0
        for x in requests:
            out.append([int(v) for v in labels[start : start + len(x)]])
            start += len(x)
        return out

    async def predict(self, req: PredictRequest) -> PredictResponse:
        check_rows(req.instances, self.n_features, self.core.knobs)
        rows = np.asarray(req.instances, dtype=np.float64)
        return PredictResponse(predictions=await self.predict_rows(rows))

    def build_api(self) -> FastAPI:
        """This replica's HTTP app (served by `__call__`, see ModelReplica)."""
        app = self.core.build_api("Gantry classifier", "Iris classifier, KServe V1 protocol.")

        # Routes are closures, not bound methods: FastAPI resolves annotations via __globals__.
        @app.post(PREDICT_PATH, response_model=PredictResponse)
        async def predict(req: PredictRequest) -> PredictResponse:
            return await self.predict(req)

        @app.get(f"/v1/models/{SERVICE}", response_model=ModelStatus)
        async def status() -> JSONResponse:
            body = ModelStatus(name=SERVICE, ready=self.core.ready).model_dump()
            return JSONResponse(body, status_code=200 if self.core.ready else 503)

        @app.get("/v1/models", response_model=ModelIndex)
        async def index() -> ModelIndex:
            return ModelIndex(models=[SERVICE])

        return app


def build_app(args: ClassifierArgs) -> Application:
    """Serve application builder used by serve.yaml (`args` are validated as ClassifierArgs)."""
    return cast(Deployment, Classifier).bind(args)  # the decorator returns a Deployment
