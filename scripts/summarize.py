import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.analysis.verdicts import Criteria
from unit_ablation.stages.summarize import summarize_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    summarize_to_file,
    entries=[tuple(entry) for entry in snakemake.params.entries],
    model_metadata_paths=snakemake.input.metadata,
    unit_damage_paths=snakemake.input.damage,
    correlation_paths=snakemake.input.correlations,
    agreement_paths=snakemake.input.agreement,
    statistics_paths=snakemake.input.statistics,
    output=snakemake.output.table,
    claims_output=snakemake.output.claims,
    markdown_output=snakemake.output.markdown,
    seeds_output=snakemake.output.seeds,
    cumulative_paths=snakemake.input.cumulative,
    reference_variant=snakemake.params.reference_variant,
    criteria=Criteria(**snakemake.params.criteria),
)
