import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.27")

# This checkout: workflow.basedir is the outer project's folder when this workflow is a module.
CHECKOUT = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))
sys.path.insert(0, str(CHECKOUT / "src"))
from unit_ablation.workflow.config_check import ConfigError, check_config


configfile: "config.yaml"


# The schema (filling its defaults) and the cross-field checks, every fault named before any job runs;
# skipped, as by snakemake.utils.validate, when this workflow is a module with skip_validation.
if not workflow.modifier.skip_validation:
    try:
        check_config(
            config,
            CHECKOUT / "schemas" / "config.schema.yaml",
            basedir=CHECKOUT,
        )
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


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
    probe = start_speed_probe()
    warm_started = start_warm_server()
    log_ablation_estimates(probe, warm_started)


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()


rule all:
    default_target: True
    input:
        STUDY.all_targets(),
