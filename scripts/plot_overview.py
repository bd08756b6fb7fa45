import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.report.unit_figures import overview_figure
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    overview_figure,
    labels=[tuple(label) for label in snakemake.params.labels],
    unit_tables=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
