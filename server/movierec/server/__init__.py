"""movierec gRPC server: `movierec serve` (app.serve); settings in config, batching in batcher.

Modules: config (ServerSettings), errors (RequestError), validation (vectorized request checks), batcher
(generic dynamic batcher), engine (requests -> batched scorer calls), servicer (protos <-> engine),
app (grpc.aio server, health, reflection, graceful shutdown).
"""
