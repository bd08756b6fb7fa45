import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # importable without installing the package
from unit_ablation.runtime.warm_start import hand_over

hand_over()  # local runs: the job forks from the run's warm-start server, imports done
from unit_ablation.stages.decode_images import decode_images_to_folder
from unit_ablation.workflow.glue import run_stage

run_stage(
    snakemake,
    decode_images_to_folder,
    image_set=snakemake.params.image_set,
    output_dir=snakemake.output[0],
    resize=snakemake.params.resize,
    crop=snakemake.params.crop,
    workers=snakemake.threads,
    key=f"data.images.{snakemake.wildcards.split}",
)
