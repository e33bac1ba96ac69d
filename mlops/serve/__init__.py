"""Serving: `mlops serve` and its parts (docs/serving.md).

- ``source``      the model-loading seam: a reference -> (model object, name, version, signature)
- ``signature``   input checks against the registered signature, every problem listed
- ``protocols``   payload parsing and answers: own /predict, MLflow /invocations, Open Inference V2
- ``batching``    adaptive micro-batching with a bounded queue
- ``router``      the canary/shadow split, sticky by a request key
- ``deployment``  the deployment file under .mlops/deployments/ (meant for git) and its verbs
- ``health``      per-second window statistics, shared between worker processes through files
- ``controller``  automatic rollback and the progressive canary, run by one elected worker
- ``requestlog``  batched Parquet request logs with rotation and retention
- ``metrics``     Prometheus text
- ``runtime``     one per worker: loaded versions, deployment following, prediction, statistics
- ``wire``        the wire protocol interface (decode, parse, answer, error) and its three implementations
- ``http``        the HTTP layer: starlette endpoints, one module per protocol family, probes, admin
- ``app``         the starlette application (the route table); ``server`` starts uvicorn
- ``predict``     batch prediction of a Parquet or CSV file, streamed in chunks

The runtime never imports the HTTP layer (``http``, ``app``, ``server``) nor the server libraries.
Nothing here prints or exits. The server libraries (uvicorn, starlette) are imported only by
``http`` and inside ``app``'s and ``server``'s functions, pandas and pyarrow only inside the
functions that predict, so ``mlops --help`` stays light.
"""
