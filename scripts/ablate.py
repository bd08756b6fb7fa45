import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.engine.options import AblationOptions
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.workflow.glue import run_stage

params = snakemake.params
run_stage(
    snakemake,
    ablate_chunk_to_file,
    model_path=snakemake.input.model,
    dataset_path=snakemake.input.dataset,
    output=snakemake.output[0],
    layer_spec=params.layer_spec,
    units=params.units,
    options=AblationOptions(
        value=params.value,
        batch_size=params.batch_size,
        units_per_pass=params.units_per_pass,
        memory_mb=params.memory_mb,
        plan=params.plan,
        device=params.device,
        precision=params.precision,
    ),
    mean_split=params.mean_split,
    threads=snakemake.threads,
)
