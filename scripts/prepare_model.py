import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.prepare_model import prepare_pretrained_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    prepare_pretrained_to_file,
    model_name=snakemake.params.model,
    arch=snakemake.params.arch,
    num_classes=snakemake.params.num_classes,
    weights_path=snakemake.input.weights or None,
    weights=snakemake.params.weights,
    dataset_path=snakemake.input.dataset,
    checkpoint_path=snakemake.output.model,
    metadata_path=snakemake.output.metadata,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    precision=snakemake.params.precision,
    units=snakemake.params.units,
    threads=snakemake.threads,
)
