import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    prepare_fashion_mnist,
    raw_dir=snakemake.params.raw_dir,
    output=snakemake.output[0],
    heldout_size=snakemake.params.heldout_size,
    seed=snakemake.params.seed,
    train_size=snakemake.params.train_size,
    test_size=snakemake.params.test_size,
)
