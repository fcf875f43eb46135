"""Digits: a small MLP trained data-parallel on Ray Train (PyTorch DDP) from scikit-learn's
bundled 8x8 digits. `python -m jobs.digits.train` from the project root, with GANTRY_JOB_RUNTIME
set by the engine (gantry/jobs.py).

Checkpoints: every epoch, rank 0 saves model + optimizer + epoch and every rank calls
`ray.train.report` (a barrier). Ray Train V2 (the default in Ray 2.60) keeps them under
`<run_dir>/checkpoints/epoch-NNNN/` with a snapshot of its checkpoint manager
(`checkpoint_manager_snapshot.json`). Resume needs no code of ours beyond
`ray.train.get_checkpoint()`:

- a worker dies: the controller restarts the worker group (FailureConfig.max_failures) and the
  new workers get the latest checkpoint of this run;
- the job is preempted and submitted again (a new Ray job, the same run_dir): the trainer is
  built with the same RunConfig(name, storage_path), Train V2 loads the snapshot it finds there,
  and the first worker group already gets the latest checkpoint. (V2 refuses
  `resume_from_checkpoint`.)

"Latest" is the last checkpoint Train's controller committed (registered in its snapshot):
report() returns once the files are persisted, and the controller takes the report when it next
polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s); a failure in between resumes
from the one before. So rank 0 waits for the commit (get_all_reported_checkpoints(COMMITTED))
before it writes the epoch's line: a line in metrics.jsonl means a restart resumes from that
epoch or a later one. (An epoch persisted but not committed when a failure hits runs again.)

Outputs (run_dir): `checkpoints/`, `metrics.jsonl` (one line per committed epoch) and
`result.json` (gantry.jobs.RESULT_FILE, written by the driver at the end; its `resumed_from` is
the epoch the last worker group started from, or null).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gantry.jobs import RESULT_FILE, RESUMED_FROM, JobRuntime, job_runtime

STATE_FILE = "state.pt"  # inside each checkpoint folder
RUN_NAME = "checkpoints"  # Ray Train's run folder under run_dir (RunConfig.name)


class Settings(BaseModel):
    """job.yaml `config` (units there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.003, gt=0)
    hidden: int = Field(128, ge=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    keep_checkpoints: int = Field(2, ge=1)


def scaling_kwargs(rt: JobRuntime) -> dict[str, Any]:
    """ScalingConfig's arguments for the runtime's workers.

    Ray 2.60's ScalingConfig rejects `GPU` in resources_per_worker unless use_gpu=True, so Ray's
    `use_gpu` follows the GPU *reservation* (the sandbox's fake GPUs included), while CUDA and
    NCCL follow `runtime.cuda` (the device and TorchConfig's backend, in train_loop)."""
    resources = {k: v for k, v in rt.worker_resources.items() if v}
    return {
        "num_workers": rt.workers,
        "use_gpu": resources.get("GPU", 0) > 0,
        "resources_per_worker": resources,
    }


def _data(s: Settings) -> tuple[Any, Any, Any, Any]:
    """(x_train, y_train, x_val, y_val) as tensors: the same split on every worker."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x / 16.0, y, test_size=s.val_fraction, random_state=s.seed, stratify=y
    )
    f32, i64 = torch.float32, torch.int64
    return (
        torch.tensor(x_tr, dtype=f32),
        torch.tensor(y_tr, dtype=i64),
        torch.tensor(x_va, dtype=f32),
        torch.tensor(y_va, dtype=i64),
    )


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker (rank `get_world_rank()` of `get_world_size()`)."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    from ray.train import CheckpointConsistencyMode
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    s = Settings(**config["settings"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if config["cuda"] else torch.device("cpu")
    group_started = round(time.time() - config["t0"], 3)  # s since the driver started

    torch.manual_seed(s.seed)
    x_tr, y_tr, x_va, y_va = _data(s)
    train_set = TensorDataset(x_tr, y_tr)
    # Each rank trains on its shard (DistributedSampler: a new shuffle every epoch, same on all
    # ranks) and validates on a disjoint slice of the validation set; sums are all-reduced.
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=s.seed)
    loader = DataLoader(train_set, batch_size=s.batch_size, sampler=sampler)
    n_val = len(y_va)
    x_va, y_va = x_va[rank::world].to(device), y_va[rank::world].to(device)

    model = nn.Sequential(
        nn.Linear(x_tr.shape[1], s.hidden),
        nn.ReLU(),
        nn.Linear(s.hidden, s.hidden),
        nn.ReLU(),
        nn.Linear(s.hidden, 10),
    ).to(device)
    cuda = device.type == "cuda"
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    resumed_from = 0  # epoch of the checkpoint this worker group starts from (0: none)
    last: dict[str, Any] = {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        resumed_from, last = state["epoch"], state["metrics"]

    metrics_file = Path(config["run_dir"]) / "metrics.jsonl"
    committed = CheckpointConsistencyMode.COMMITTED
    for epoch in range(resumed_from + 1, s.epochs + 1):
        t_epoch = time.monotonic()
        sampler.set_epoch(epoch)
        ddp.train()
        sums = torch.zeros(4, device=device)  # train loss, train samples, val loss, val correct
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(ddp(xb), yb)
            (loss / len(yb)).backward()
            optimizer.step()
            sums[0] += loss.detach()
            sums[1] += len(yb)
        ddp.eval()
        with torch.no_grad():
            logits = model(x_va)
            sums[2] = loss_fn(logits, y_va)
            sums[3] = (logits.argmax(dim=1) == y_va).sum()
        dist.all_reduce(sums)
        last = {
            "epoch": epoch,
            "epochs": s.epochs,
            "train_loss": round(float(sums[0] / sums[1]), 5),
            "val_loss": round(float(sums[2] / n_val), 5),
            "val_acc": round(float(sums[3] / n_val), 5),
            "resumed_from": resumed_from or None,  # this worker group's checkpoint
            "epoch_s": round(time.monotonic() - t_epoch, 3),
        }
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:  # DDP keeps the replicas equal: one copy is the checkpoint
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save({**state, "epoch": epoch, "metrics": last}, Path(tmp) / STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(tmp)
            # A barrier: returns once the checkpoint is persisted under run_dir/checkpoints/.
            ray.train.report(last, checkpoint=saved, checkpoint_dir_name=f"epoch-{epoch:04d}")
        if rank == 0:
            # Committed: a restart (or the next job) resumes from this epoch or a later one.
            ray.train.get_all_reported_checkpoints(consistency_mode=committed)
            now = round(time.time() - config["t0"], 3)  # s since the driver started
            line = {**last, "job": config["job_id"], "group_started_s": group_started, "t": now}
            with metrics_file.open("a") as f:
                f.write(json.dumps(line) + "\n")
            first = epoch == resumed_from + 1 and resumed_from > 0
            resumed = f" (resumed from epoch {resumed_from})" if first else ""
            _say(
                f"epoch {epoch}/{s.epochs} loss {last['train_loss']:.3f} "
                f"val_acc {last['val_acc']:.3f} ({last['epoch_s']:.1f} s){resumed}"
            )
    if resumed_from >= s.epochs and rank == 0:
        _say(f"all {s.epochs} epochs were done already (checkpoint of epoch {resumed_from})")
    return {"resumed_from": resumed_from or None, "last": last, "group_started_s": group_started}


def _say(line: str) -> None:
    # Straight to stdout (Ray forwards a worker's stdout to the driver: `ray job logs`); Train's
    # patched print() would log each line twice.
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def run(rt: JobRuntime) -> dict[str, Any]:
    """Train (or resume) and write run_dir/result.json; returns it. Connects to the Ray the
    environment names (RAY_ADDRESS: set by the Ray Jobs API), else starts a local one."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    t0 = time.time()
    s = Settings(**rt.config)
    run_dir = Path(rt.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ray.init(log_to_driver=True)
    job_id = ray.get_runtime_context().get_job_id()
    _say(
        f"digits: {rt.workers} workers x {rt.worker_resources}, backend {rt.backend}, "
        f"{s.epochs} epochs, run dir {run_dir} (ray job {job_id})"
    )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "settings": s.model_dump(),
            "run_dir": str(run_dir),
            "cuda": rt.cuda,
            "job_id": job_id,
            "t0": t0,
        },
        torch_config=TorchConfig(backend=rt.backend),
        scaling_config=ScalingConfig(**scaling_kwargs(rt)),
        run_config=RunConfig(
            # The same name and storage path on every attempt: Train V2 then finds its snapshot
            # and hands the latest checkpoint to the first worker group (resume across jobs).
            name=RUN_NAME,
            storage_path=str(run_dir),
            failure_config=FailureConfig(max_failures=rt.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=s.keep_checkpoints),
        ),
    )
    result = trainer.fit()
    out = summarize(run_dir, job_id, result.return_value or {}, time.time() - t0)
    (run_dir / RESULT_FILE).write_text(json.dumps(out, indent=2) + "\n")
    _say(f"digits: done {json.dumps(out)}")
    return out


def summarize(run_dir: Path, job_id: str, ret: dict[str, Any], total_s: float) -> dict[str, Any]:
    """result.json: the final epoch's metrics, where this job resumed from, and its timings
    (from metrics.jsonl and the last worker group's return value)."""
    lines = []
    path = run_dir / "metrics.jsonl"
    for text in path.read_text().splitlines() if path.exists() else []:
        try:  # a worker killed while writing leaves a partial line
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    mine = [x for x in lines if x["job"] == job_id]
    groups = {x["group_started_s"]: x["resumed_from"] for x in mine}  # worker groups of this job
    final = ret.get("last") or (lines[-1] if lines else {})
    return {
        "epochs": final.get("epoch", 0),
        "val_acc": final.get("val_acc"),
        "val_loss": final.get("val_loss"),
        "train_loss": final.get("train_loss"),
        # The epoch whose checkpoint the last worker group started from (null: from scratch):
        # after a preemption (a new job) or after a worker failure (a restarted group).
        RESUMED_FROM: ret.get("resumed_from"),
        # Each worker group of this job that committed an epoch: when it started (s since the
        # driver did) and the checkpoint it started from. More than one: restarts after failures.
        "worker_groups": [{"started_s": t, "resumed_from": e} for t, e in sorted(groups.items())],
        "restarts": max(len(groups) - 1, 0),
        "epochs_this_job": len({x["epoch"] for x in mine}),
        "seconds_to_first_checkpoint": mine[0]["t"] if mine else None,  # committed
        "seconds_total": round(total_s, 3),
        "ray_job_id": job_id,
        "checkpoints": sorted(p.name for p in (run_dir / RUN_NAME).glob("epoch-*")),
    }


def main() -> None:
    # Train V2 (the default in 2.60) is what resumes across jobs from RunConfig(name,
    # storage_path); V1 would start over. Said explicitly so that no environment turns it off.
    os.environ["RAY_TRAIN_V2_ENABLED"] = "1"
    run(job_runtime())


if __name__ == "__main__":
    main()
