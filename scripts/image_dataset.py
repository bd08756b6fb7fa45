import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.data.image_cache import write_dataset_index
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    write_dataset_index,
    splits={"test": snakemake.input.test, "heldout": snakemake.input.heldout},
    output=snakemake.output[0],
)
