import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.train import train_to_checkpoint
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    train_to_checkpoint,
    dataset_path=snakemake.input.dataset,
    checkpoint_path=snakemake.output.model,
    metadata_path=None,  # the model_metadata rule writes it from the checkpoint
    model_name=snakemake.params.model,
    variant=snakemake.params.variant,
    train=snakemake.params.train,
    threads=snakemake.threads,
)
