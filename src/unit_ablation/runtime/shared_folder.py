"""The folder a local run's jobs share files in (the trunk outputs of `engine.trunk_cache`).

The warm-start server keeps it beside its socket, names it to each job it forks in
`TRUNK_CACHE_VARIABLE`, and removes it when it stops. A module of its own, importing only `os`, so
that the server and the ablate stage can both name it: the server must not import torch before
it preloads it, nor this package (the jobs import that from disk), and the stages' code hashes
should not follow the server's.
"""

import os

TRUNK_CACHE_VARIABLE = "UNIT_ABLATION_TRUNK_CACHE"
TRUNK_CACHE_FOLDER = "trunks"
BUDGET_VARIABLE = "UNIT_ABLATION_TRUNK_CACHE_GB"
DEFAULT_BUDGET_GB = 8.0


def budget_gb() -> float:
    """The folder's budget in GB from `UNIT_ABLATION_TRUNK_CACHE_GB` (0 or less: no sharing);
    ValueError when it is not a number. The run estimate reads it too, without torch."""
    return float(os.environ.get(BUDGET_VARIABLE, DEFAULT_BUDGET_GB))
