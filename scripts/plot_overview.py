import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.plot_overview import plot_overview_to_files
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    plot_overview_to_files,
    labels=[tuple(label) for label in snakemake.params.labels],
    unit_paths=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
