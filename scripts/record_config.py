import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.glue import run_stage
from unit_ablation.io import write_yaml

run_stage(snakemake, write_yaml, data=snakemake.params.config, path=snakemake.output[0])
