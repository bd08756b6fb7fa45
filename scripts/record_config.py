import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.record_config import record_config_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(snakemake, record_config_to_file, config=snakemake.params.config, path=snakemake.output[0])
