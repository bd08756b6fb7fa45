import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.image_dataset import image_dataset_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    image_dataset_to_file,
    test=snakemake.input.test,
    heldout=snakemake.input.heldout,
    output=snakemake.output[0],
)
