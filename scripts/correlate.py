import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.correlate import correlate_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    correlate_to_file,
    layer_specs=[snakemake.params.layer_spec],
    attribute_paths=[snakemake.input.attributes],
    class_attribute_paths=[snakemake.input.class_attributes],
    damage_paths=[snakemake.input.damage],
    class_damage_paths=[snakemake.input.class_damage],
    output=snakemake.output.correlation,
    agreement_output=snakemake.output.agreement,
    resamples=snakemake.params.resamples,
    seed=snakemake.params.seed,
    permutations=snakemake.params.permutations,
    concept_paths=[snakemake.input.concepts] if snakemake.input.concepts else None,
    min_active_fraction=snakemake.params.min_active_fraction,
)
