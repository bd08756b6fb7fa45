import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.analysis.network_stats import NetworkOptions
from unit_ablation.stages.network_statistics import network_statistics_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    network_statistics_to_file,
    metadata_path=snakemake.input.metadata,
    attributes_path=snakemake.input.attributes,
    class_attributes_path=snakemake.input.class_attributes,
    damage_path=snakemake.input.damage,
    class_damage_path=snakemake.input.class_damage,
    output=snakemake.output[0],
    layer_spec=snakemake.params.layer_spec,
    options=NetworkOptions(**snakemake.params.options),
    concept_path=snakemake.input.concepts or None,
)
