import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.report.study_figures import cumulative_figure
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    cumulative_figure,
    cumulative_tables=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
