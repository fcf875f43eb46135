#!/bin/sh
# Container entrypoint for every Gantry service: a single-node Ray per pod, then `serve run` of the
# service's serve.yaml as PID 1.
#   usage: entrypoint.sh services/<name>/serve.yaml
# Ray is started first only to pin its metrics-export port (8080, scraped by Prometheus):
# `serve run` alone would start Ray with a random one. No autoscaler monitor (~50 MiB):
# a pod's Ray is one node. `exec` makes `serve run` PID 1, so the
# image's STOPSIGNAL (SIGINT) reaches it and it drains replicas (serve.shutdown()) before exit.
set -eu
config="${1:?usage: entrypoint.sh services/<name>/serve.yaml}"
# Ray's HAProxy ingress, as the cluster's pods run it (service.yaml `serve.ingress: haproxy`);
# `docker run -e RAY_SERVE_ENABLE_HA_PROXY=0` serves through Serve's Python proxy instead.
export RAY_SERVE_ENABLE_HA_PROXY="${RAY_SERVE_ENABLE_HA_PROXY:-1}"
# 2 malloc arenas per process, as the Deployment sets it (gantry/service.py ray_env).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
ray start --head \
  --metrics-export-port="${GANTRY_METRICS_PORT:-8080}" \
  --include-dashboard=false \
  --no-monitor \
  --disable-usage-stats
exec serve run --address=auto "$config"
