import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.plot_layer import plot_layer_to_files
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    plot_layer_to_files,
    attributes_path=snakemake.input.attributes,
    damage_path=snakemake.input.damage,
    class_damage_path=snakemake.input.class_damage,
    correlation_path=snakemake.input.correlation,
    layer_spec=snakemake.params.layer_spec,
    attributes_outputs=[snakemake.output.attributes, snakemake.output.attributes_pdf],
    heatmap_outputs=[snakemake.output.heatmap, snakemake.output.heatmap_pdf],
    title=snakemake.params.title,
    heatmap_units=snakemake.params.heatmap_units,
    dpi=snakemake.params.dpi,
)
