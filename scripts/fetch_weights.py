import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.fetch_weights import fetch_weights_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    fetch_weights_to_file,
    arch=snakemake.params.arch,
    enum=snakemake.params.enum,
    output=snakemake.output[0],
    weights_mirror=snakemake.params.weights_mirror,
)
