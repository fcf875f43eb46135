"""The embedded sandbox: Gantry's data plane on one machine, on real engines, no Kubernetes.

`gantry sandbox up|status|down` and `gantry rollout` (cli.py) map each cluster concept onto
what Ray really does:

    pods                          -> Serve replicas
    HPA (in-flight requests)      -> Serve replica autoscaling (service.yaml `autoscaling`)
    node pools + autoscaler       -> Ray node types + Ray's autoscaler, fake multi-node provider
    nodeSelector / GPU requests   -> `pool:<name>` custom resource / `num_gpus`
    Istio weighted routing        -> a router deployment per service (router.py)
    Flagger                       -> Gantry's rollout driver (rollout.py), same `canary` policy
    Prometheus (kube-prometheus)  -> a real Prometheus on loopback, scraping Ray's discovery file

Modules: raycluster.py (head + autoscaler config from the stack's pools), prometheus.py,
serving.py (the Serve config: one application per version + one router per service, PUT to
Serve's REST API), router.py, rollout.py (the driver: a ticker around gantry/canary.py's
state machine) + canary_engine.py (its actions on the sandbox) + rollout_files.py (its status,
lock and events) + analysis.py (its PromQL checks), lifecycle.py (up/down/status), procs.py
(PIDs and process sessions), state.py, ports.py, loopback.py (keeps Serve replicas' gRPC
port on 127.0.0.1).

For tools that observe a running sandbox (load tests): read `.gantry/sandbox/state.json`
(`SandboxState` in gantry/sandbox_state.py, so observers need not import the sandbox; another
state dir with `--state-dir` / `GANTRY_SANDBOX_DIR`):

- `routes[<service>]`: the service's base URL, e.g. `http://127.0.0.1:<serve>/embedder`
  (then `/v1/embeddings`); `urls.serve` is Serve's HTTP proxy.
- `urls.serve_api` = `GET http://127.0.0.1:<dashboard>/api/serve/applications/` (Serve's REST
  status): application `<service>-<version>` (e.g. `embedder-v1`) holds that version's
  replicas (`deployments.<Name>.replicas[*].state == "RUNNING"`); application `<service>`
  is the router, whose `deployments.Router.deployment_config.user_config.routes` lists
  `{app, deployment, weight}` (the live traffic split, %).
- `urls.nodes_api` = `GET http://127.0.0.1:<dashboard>/api/v0/nodes?detail=1` (Ray's state
  API): `data.result.result[*]` with `state` (`ALIVE`) and `labels["gantry.dev/pool"]` (pool).
- `urls.prometheus`: Prometheus (`/api/v1/query`); `routing.json`: stable/canary versions and
  weight; `rollouts/<service>.jsonl`: rollout events.
- `gantry sandbox status --json` prints all of the above in one document (`applications`:
  replicas per deployment, `routing`, `nodes`: alive nodes per pool).
"""
