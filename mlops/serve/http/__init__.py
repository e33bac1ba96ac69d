"""The HTTP layer of `mlops serve`: starlette endpoints over the runtime (``serve/runtime.py``).

- ``common``  what every endpoint shares: the token check, the bounded body read, the prediction answer
- ``own``     POST /predict, GET /metadata, GET /metrics
- ``mlflow``  POST /invocations, GET /version
- ``v2``      the Open Inference Protocol V2 routes under /v2/models and GET /v2
- ``probes``  GET /ping, /health, /v2/health/live, /v2/health/ready (no token)
- ``admin``   POST /admin/reload, POST /admin/rollback (``trust.py`` decides who may call them)

Each endpoint is ``async (runtime, wire protocol, request) -> response``; ``app.py`` holds the one
route table that names each route's protocol, and wraps every endpoint in the same guard. These
modules import starlette at the top: only ``app.py`` imports them, when a server starts.
"""
