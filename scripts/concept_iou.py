import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.concept_iou import concept_iou_to_file
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    concept_iou_to_file,
    model_path=snakemake.input.model,
    layer_spec=snakemake.params.layer_spec,
    root=snakemake.params.root,
    output=snakemake.output.units,
    pairs_output=snakemake.output.pairs,
    batch_size=snakemake.params.batch_size,
    quantile=snakemake.params.quantile,
    detector_iou=snakemake.params.detector_iou,
    threads=snakemake.threads,
    attributes_path=snakemake.input.attributes,
)
