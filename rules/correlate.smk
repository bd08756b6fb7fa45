rule correlate:
    input:
        attributes=attributes_of("units"),
        class_attributes=attributes_of("per_class"),
        damage="results/{model}/ablation/{layer}.units.tsv",
        class_damage="results/{model}/ablation/{layer}.classes.tsv",
        concepts=lambda wildcards: STUDY.concept_table(wildcards.model, wildcards.layer),
    output:
        correlation="results/{model}/correlation/{layer}.tsv",
        agreement="results/{model}/agreement/{layer}.tsv",
    log:
        "results/logs/correlate/{model}/{layer}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("correlate.py"),
        layer="{layer}",
        resamples=int(config["correlation"]["bootstrap"]),
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
        damage="results/{model}/ablation/{layer}.units.tsv",
        class_damage="results/{model}/ablation/{layer}.classes.tsv",
        concepts=lambda wildcards: STUDY.concept_table(wildcards.model, wildcards.layer),
    output:
        "results/{model}/statistics/{layer}.tsv",
    log:
        "results/logs/network_statistics/{model}/{layer}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("network_statistics.py"),
        layer="{layer}",
        options=STUDY.network_options(),
    script:
        "../scripts/network_statistics.py"


rule combine_correlations:
    input:
        correlation=lambda wildcards: expand(
            "results/{model}/correlation/{layer}.tsv",
            model=wildcards.model,
            layer=STUDY.layer_specs[wildcards.model],
        ),
        agreement=lambda wildcards: expand(
            "results/{model}/agreement/{layer}.tsv",
            model=wildcards.model,
            layer=STUDY.layer_specs[wildcards.model],
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
