import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.files.writing import write_yaml
from unit_ablation.workflow.glue import run_stage

run_stage(snakemake, write_yaml, data=snakemake.params.config, path=snakemake.output[0])
