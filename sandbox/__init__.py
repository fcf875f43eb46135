"""The embedded sandbox: Gantry's data plane on one machine, on real engines, no Kubernetes.

`gantry sandbox up|status|down`, `gantry rollout` (cli.py) and `gantry job` (job_cli.py) map
each cluster concept onto what Ray really does:

    pods                          -> Serve replicas
    HPA (in-flight requests)      -> Serve replica autoscaling (service.yaml `autoscaling`)
    node pools + autoscaler       -> Ray node types + Ray's autoscaler, fake multi-node provider
    nodeSelector / GPU requests   -> `pool:<name>` custom resource / `num_gpus`
    Istio (Envoy) weighted routing -> HAProxy as the gateway, weights in maps (gateway.py)
    Flagger                       -> Gantry's rollout driver (rollout.py), same `canary` policy
    Prometheus (kube-prometheus)  -> a real Prometheus on loopback, scraping Ray's discovery file
    KubeRay RayJob + Kueue        -> Ray Jobs API behind a queue applying Kueue's rule (jobs.py,
                                     jobqueue.py; gantry/admission.py)

Modules: raycluster.py (head + autoscaler config from the stack's pools), prometheus.py,
serving.py (the Serve config: one application per version, PUT to Serve's REST API),
gateway.py (HAProxy in front of Serve: `/<service>` split between versions by weight),
rollout.py (the driver: a ticker around gantry/canary.py's
state machine) + canary_engine.py (its actions on the sandbox) + rollout_files.py (its status,
lock and events) + analysis.py (its PromQL checks), lifecycle.py (up/down/status), procs.py
(PIDs and process sessions), state.py, ports.py, loopback.py (keeps Serve replicas' gRPC
port on 127.0.0.1), retry.py (the one wait/retry policy for Ray's dashboard, Serve's REST API
and Prometheus), jobs.py + jobqueue.py (batch jobs: a job.yaml as a queued Ray job, and the
queue's controller).

For tools that observe a running sandbox (load tests): read `.gantry/sandbox/state.json`
(`SandboxState` in gantry/sandbox_state.py, so observers need not import the sandbox; another
state dir with `--state-dir` / `GANTRY_SANDBOX_DIR`):

- `routes[<service>]`: the service's base URL, e.g. `http://127.0.0.1:<serve>/embedder`
  (then `/v1/embeddings`); `urls.serve` is the gateway, `urls.serve_proxy` Serve's HTTP proxy
  behind it (each version at `/_v/<service>-<version>`).
- `urls.serve_api` = `GET http://127.0.0.1:<dashboard>/api/serve/applications/` (Serve's REST
  status): application `<service>-<version>` (e.g. `embedder-v1`) holds that version's
  replicas (`deployments.<Name>.replicas[*].state == "RUNNING"`).
- `urls.nodes_api` = `GET http://127.0.0.1:<dashboard>/api/v0/nodes?detail=1` (Ray's state
  API): `data.result.result[*]` with `state` (`ALIVE`) and `labels["gantry.dev/pool"]` (pool).
- `routing.json` (`Routing` in gantry/sandbox_state.py, `read_routing()`): the stable and canary
  version of each service and the canary's weight (%), as the gateway applies them.
- `urls.prometheus`: Prometheus (`/api/v1/query`); `rollouts/<service>.jsonl`: rollout events.
- `jobs/queue.json` (`JobQueueFile`, `read_jobs()`): every job's state, attempts, run directory
  and the events of its queueing (admitted, preempted and why).
- `gantry sandbox status --json` prints all of the above in one document (`applications`:
  replicas per deployment, `routing`, `nodes`: alive nodes per pool).
"""
