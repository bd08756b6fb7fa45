from snakemake.utils import min_version, validate

min_version("9.27")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/pretrained.smk"
include: "rules/extract.smk"
include: "rules/attributes.smk"
include: "rules/concepts.smk"
include: "rules/ablate.smk"
include: "rules/gather.smk"
include: "rules/cumulative.smk"
include: "rules/correlate.smk"
include: "rules/plot.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


onstart:
    log_ablation_estimates()


rule all:
    default_target: True
    input:
        all_targets(),
