"""The runtime core: artifact schema, sparse ratings and id maps, model interface and registry, scorer.

It imports neither the trainer, the server, the client nor the CLI.
"""
