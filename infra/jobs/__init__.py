"""Batch jobs on a cluster: each `jobs/<name>/job.yaml` as the KubeRay RayJob a team submits.

Jobs are submitted, not deployed: `pulumi up` installs KubeRay, Kueue and the teams' queues
(infra/addons/batch.py) and never creates a RayJob; `gantry render` writes every job's RayJob
and the offline checks read them as submitted after everything else (infra/checks/jobs.py).
"""

from infra.jobs.rayjob import RenderedJob, rayjob, render_job_yaml, render_jobs, write_jobs

__all__ = ["RenderedJob", "rayjob", "render_job_yaml", "render_jobs", "write_jobs"]
