import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.extract import extract_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    extract_to_file,
    model_path=snakemake.input.model,
    dataset_path=snakemake.input.dataset,
    output=snakemake.output[0],
    layer_spec=snakemake.params.layer_spec,
    attribute_split=snakemake.params.attribute_split,
    threads=snakemake.threads,
    device=snakemake.params.device,
    precision=snakemake.params.precision,
)
