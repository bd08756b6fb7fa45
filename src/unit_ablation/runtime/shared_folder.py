"""The folder a local run's jobs share files in (the trunk outputs of `engine.trunk_cache`).

The warm-start server keeps it beside its socket, names it to each job it forks in
`TRUNK_CACHE_VARIABLE`, and removes it when it stops. A module of its own, without imports, so
that the server and the ablate stage can both name it: the server must not import torch before
it preloads it, nor this package (the jobs import that from disk), and the stages' code hashes
should not follow the server's.
"""

TRUNK_CACHE_VARIABLE = "UNIT_ABLATION_TRUNK_CACHE"
TRUNK_CACHE_FOLDER = "trunks"
