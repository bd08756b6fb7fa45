import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.attributes import attributes_to_files
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    attributes_to_files,
    activations_path=snakemake.input.activations,
    model_path=snakemake.input.model,
    units_output=snakemake.output.units,
    classes_output=snakemake.output.classes,
    layer_spec=snakemake.params.layer_spec,
)
