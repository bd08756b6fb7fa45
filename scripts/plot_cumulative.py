import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.glue import run_stage
from unit_ablation.plots import cumulative_figure

run_stage(
    snakemake,
    cumulative_figure,
    cumulative_tables=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
