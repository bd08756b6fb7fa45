import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.models.fetch_weights import fetch_weights, weights_url
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    fetch_weights,
    url=weights_url(snakemake.params.arch, snakemake.params.enum),
    output=snakemake.output[0],
    mirror=snakemake.params.mirror,
)
