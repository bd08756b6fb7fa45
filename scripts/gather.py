import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.gather import gather_to_files
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    gather_to_files,
    chunk_paths=snakemake.input.chunks,
    class_names_source=snakemake.input.dataset,
    classes_output=snakemake.output.classes,
    units_output=snakemake.output.units,
    damage_thresholds=snakemake.params.damage_thresholds,
    fdr_alpha=snakemake.params.fdr_alpha,
    fdr_method=snakemake.params.fdr_method,
)
