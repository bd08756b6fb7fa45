import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.plot_agreement import plot_agreement_to_files
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    plot_agreement_to_files,
    entries=[tuple(entry) for entry in snakemake.params.entries],
    agreement_paths=list(snakemake.input),
    outputs=[snakemake.output.png, snakemake.output.pdf],
    dpi=snakemake.params.dpi,
)
