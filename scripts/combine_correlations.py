import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.combine_correlations import combine_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    combine_to_file,
    correlation_paths=snakemake.input.correlation,
    agreement_paths=snakemake.input.agreement,
    output=snakemake.output.correlation,
    agreement_output=snakemake.output.agreement,
)
