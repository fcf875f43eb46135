"""Embeddings: batch inference on Ray Data with the embedder service's model.
`python -m jobs.embeddings.embed` from the project root, with GANTRY_JOB_RUNTIME set by the
engine (gantry/jobs.py).

read_text(input) -> map_batches(Embedder, a pool of `runtime.workers` actors, each holding
`runtime.worker_resources`) -> write_parquet(run_dir/vectors/): one row per sentence, `text`
(string) and `embedding` (384 float32, L2-normalised; stored as a list column tagged with Ray's
tensor extension, so plain pyarrow/pandas read it as a list). Then run_dir/result.json
(gantry.jobs.RESULT_FILE: rows, seconds, rows/s).
Idempotent: the output is overwritten, so a preempted run is simply run again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gantry.jobs import RESULT_FILE, RESUMED_FROM, JobRuntime, job_runtime
from services.embedder.model import DIMENSIONS, DevicePref, Version

ROOT = Path(__file__).resolve().parents[2]  # the project root (relative `input` paths)
OUTPUT = "vectors"  # under run_dir


class Settings(BaseModel):
    """job.yaml `config` (units there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = "jobs/embeddings/sentences.txt"
    batch_size: int = Field(64, ge=1)
    bucket_size: int = Field(32, ge=0)
    backend: Version = "v1"


def actor_options(rt: JobRuntime) -> dict[str, Any]:
    """map_batches' resource arguments for one actor: Ray takes CPU and GPU as num_cpus and
    num_gpus, every other resource (the sandbox's `pool:<name>`) in `resources`."""
    res = dict(rt.worker_resources)
    return {
        "num_cpus": res.pop("CPU", 1),
        "num_gpus": res.pop("GPU", 0),
        "resources": {k: v for k, v in res.items() if v} or None,
    }


class Embedder:
    """One model actor: services/embedder/model.py's encoder, loaded once."""

    def __init__(
        self, backend: Version, device: DevicePref, threads: int, bucket_size: int
    ) -> None:
        from services.embedder.model import load_encoder

        t = time.monotonic()
        self.encoder = load_encoder(backend, device, threads)
        self.bucket_size = bucket_size
        self.rows = 0
        self.busy_s = 0.0
        _say(f"model {backend} loaded on {self.encoder.device} in {time.monotonic() - t:.1f} s")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        t = time.monotonic()
        texts = [str(x) for x in batch["text"]]
        vectors = self.encoder.encode(texts, self.bucket_size)
        self.busy_s += time.monotonic() - t
        self.rows += len(texts)
        rate = self.rows / self.busy_s
        _say(f"+{len(texts)} rows ({self.rows} on this actor, {rate:.0f} rows/s)")
        return {"text": batch["text"], "embedding": vectors}


def _say(line: str) -> None:
    # Straight to stdout: Ray forwards an actor's stdout to the driver (`ray job logs`).
    sys.stdout.write(f"embeddings: {line}\n")
    sys.stdout.flush()


def run(rt: JobRuntime) -> dict[str, Any]:
    """Embed the input file and write run_dir/vectors/ and run_dir/result.json; returns the
    result. Connects to the Ray the environment names (RAY_ADDRESS: set by the Ray Jobs API),
    else starts a local one."""
    import ray
    import ray.data
    from ray.data import SaveMode

    t0 = time.monotonic()
    s = Settings(**rt.config)
    source = Path(s.input)
    source = source if source.is_absolute() else ROOT / source  # not the cwd: Ray Jobs' differs
    run_dir = Path(rt.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / OUTPUT
    device: DevicePref = "cuda" if rt.cuda else "cpu"
    threads = max(1, int(rt.worker_resources.get("CPU", 1)))

    ray.init(log_to_driver=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one line per batch from the actors instead
    _say(f"{source} -> {out}: {rt.workers} actors x {rt.worker_resources}, device {device}")
    ds = ray.data.read_text(str(source)).map_batches(
        Embedder,
        fn_constructor_kwargs={
            "backend": s.backend,
            "device": device,
            "threads": threads,
            "bucket_size": s.bucket_size,
        },
        batch_size=s.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=rt.workers),  # `concurrency=`: deprecated
        **actor_options(rt),
    )
    t_run = time.monotonic()
    ds.write_parquet(str(out), mode=SaveMode.OVERWRITE)
    seconds = time.monotonic() - t_run  # the pipeline: read, model load, embed, write
    rows = ray.data.read_parquet(str(out)).count()  # from the files' metadata
    summary = {
        "rows": rows,
        "dims": DIMENSIONS,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        "seconds_total": round(time.monotonic() - t0, 3),  # + connecting to Ray, the count
        "workers": rt.workers,
        "device": device,
        "backend": s.backend,
        "input": str(source),
        "output": str(out),
        RESUMED_FROM: None,  # nothing to resume: a rerun starts over and overwrites
    }
    (run_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    _say(f"done {json.dumps(summary)}")
    return summary


def main() -> None:
    run(job_runtime())


if __name__ == "__main__":
    main()
