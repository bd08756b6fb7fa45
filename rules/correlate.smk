rule correlate:
    input:
        attributes=attributes_of("units"),
        class_attributes=attributes_of("per_class"),
        damage="results/{model}/ablation/{layer_spec}.units.tsv",
        class_damage="results/{model}/ablation/{layer_spec}.classes.tsv",
        concepts=lambda wildcards: STUDY.concept_table(
            wildcards.model, wildcards.layer_spec
        ),
    output:
        correlation="results/{model}/correlation/{layer_spec}.tsv",
        agreement="results/{model}/agreement/{layer_spec}.tsv",
    log:
        "results/logs/correlate/{model}/{layer_spec}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("correlate.py"),
        layer_spec="{layer_spec}",
        resamples=int(config["correlation"]["resamples"]),
        seed=int(config["correlation"]["seed"]),
        permutations=int(config["correlation"]["permutations"]),
        min_active_fraction=float(config["correlation"]["min_active_fraction"]),
    script:
        "../scripts/correlate.py"


rule network_statistics:
    input:
        metadata="results/models/{model}.json",
        attributes=attributes_of("units"),
        class_attributes=attributes_of("per_class"),
        damage="results/{model}/ablation/{layer_spec}.units.tsv",
        class_damage="results/{model}/ablation/{layer_spec}.classes.tsv",
        concepts=lambda wildcards: STUDY.concept_table(
            wildcards.model, wildcards.layer_spec
        ),
    output:
        "results/{model}/statistics/{layer_spec}.tsv",
    log:
        "results/logs/network_statistics/{model}/{layer_spec}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("network_statistics.py"),
        layer_spec="{layer_spec}",
        options=STUDY.network_options(),
    script:
        "../scripts/network_statistics.py"


rule combine_correlations:
    input:
        correlation=lambda wildcards: expand(
            "results/{model}/correlation/{layer_spec}.tsv",
            model=wildcards.model,
            layer_spec=STUDY.layer_specs[wildcards.model],
        ),
        agreement=lambda wildcards: expand(
            "results/{model}/agreement/{layer_spec}.tsv",
            model=wildcards.model,
            layer_spec=STUDY.layer_specs[wildcards.model],
        ),
    output:
        correlation="results/{model}/correlation.tsv",
        agreement="results/{model}/agreement.tsv",
    log:
        "results/logs/combine_correlations/{model}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("combine_correlations.py"),
    script:
        "../scripts/combine_correlations.py"
