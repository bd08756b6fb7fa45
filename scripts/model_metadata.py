import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.model_metadata import model_metadata_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    model_metadata_to_file,
    checkpoint_path=snakemake.input.model,
    output=snakemake.output[0],
)
