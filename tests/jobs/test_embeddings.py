"""jobs/embeddings for real on a private local Ray: its driver (`python -m
jobs.embeddings.embed`) embeds a small file on one model actor holding the job's worker
resources (a fake GPU included) and writes one 384-dim unit vector per sentence to Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gantry.jobs import RESULT_FILE, RESUMED_FROM
from tests.jobs.jobrun import runtime, start_job
from tests.services.raylocal import REPO, LocalRay

pytestmark = pytest.mark.e2e  # real local Ray (session fixture: tests/jobs/conftest.py)

N = 24  # sentences: 3 batches of 8


def test_writes_one_unit_vector_per_sentence(
    job_ray: LocalRay, tmp_path: Path, timings: dict[str, float]
) -> None:
    shipped = (REPO / "jobs/embeddings/sentences.txt").read_text().splitlines()
    assert len(shipped) >= 200 and len(set(shipped)) == len(shipped)
    sentences = shipped[:N]
    source = tmp_path / "input.txt"
    source.write_text("\n".join(sentences) + "\n")
    run_dir = tmp_path / "run"
    rt = runtime("embeddings", run_dir, input=str(source), batch_size=8)
    assert rt.worker_resources.get("GPU") == 1  # the pool's (fake) GPU, requested by the actor

    stale = run_dir / "vectors" / "stale.parquet"  # a previous attempt's output: replaced
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not parquet")
    wall = start_job(job_ray, "jobs.embeddings.embed", rt, tmp_path / "driver.log").wait()
    timings[f"embeddings: total for {N} sentences (driver start to exit)"] = wall
    assert not stale.exists()

    summary = json.loads((run_dir / RESULT_FILE).read_text())
    assert summary["rows"] == N and summary["dims"] == 384
    assert summary["device"] == "cpu" and summary["rows_per_s"] > 0
    assert summary[RESUMED_FROM] is None
    timings["embeddings: pipeline (read, model load, embed, write)"] = summary["seconds"]
    table = pq.read_table(run_dir / "vectors")
    assert table.num_rows == N
    assert sorted(table.column("text").to_pylist()) == sorted(sentences)
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors.shape == (N, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert len({v.tobytes() for v in vectors}) == N  # one vector per sentence, none repeated
