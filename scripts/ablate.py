import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    ablate_chunk_to_file,
    model_path=snakemake.input.model,
    dataset_path=snakemake.input.dataset,
    output=snakemake.output[0],
    layer=snakemake.params.layer,
    units=snakemake.params.units,
    value=snakemake.params.value,
    batch_size=snakemake.params.batch_size,
    units_per_pass=snakemake.params.units_per_pass,
    device=snakemake.params.device,
    threads=snakemake.threads,
    mean_split=snakemake.params.mean_split,
    plan=snakemake.params.plan,
    memory_mb=snakemake.params.memory_mb,
    precision=snakemake.params.precision,
)
