import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.glue import run_stage
from unit_ablation.images import write_dataset_index

run_stage(
    snakemake,
    write_dataset_index,
    splits={"test": snakemake.input.test, "heldout": snakemake.input.heldout},
    output=snakemake.output[0],
)
