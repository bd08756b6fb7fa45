import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.report.claims_figure import network_effects_figure
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    network_effects_figure,
    statistics_tables=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
