import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.report.study_figures import comparison_figure
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    comparison_figure,
    entries=[tuple(entry) for entry in snakemake.params.entries],
    unit_tables=snakemake.input.units,
    attribute_tables=snakemake.input.attributes,
    correlation_tables=snakemake.input.correlations,
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
