import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.prepare_data import prepare_data_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    prepare_data_to_file,
    raw_dir=snakemake.params.raw_dir,
    output=snakemake.output[0],
    heldout_size=snakemake.params.heldout_size,
    split_seed=snakemake.params.split_seed,
    train_size=snakemake.params.train_size,
    test_size=snakemake.params.test_size,
)
