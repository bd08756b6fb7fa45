import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.report.unit_figures import sorted_units_figure
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    sorted_units_figure,
    layers=snakemake.params.layers,
    unit_tables=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    title=snakemake.params.title,
    dpi=snakemake.params.dpi,
)
