import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.cumulative import cumulative_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    cumulative_to_file,
    model_path=snakemake.input.model,
    dataset_path=snakemake.input.dataset,
    class_damage_path=snakemake.input.class_damage,
    output=snakemake.output[0],
    model_name=snakemake.params.model,
    layer=snakemake.params.layer,
    classes=snakemake.params.classes,
    max_units=snakemake.params.max_units,
    random_draws=snakemake.params.random_draws,
    seed=snakemake.params.seed,
    value=snakemake.params.value,
    mean_split=snakemake.params.mean_split,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    precision=snakemake.params.precision,
    threads=snakemake.threads,
)
