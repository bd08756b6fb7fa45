rule correlate:
    input:
        attributes="results/{model}/attributes/{layer}.tsv",
        class_attributes="results/{model}/attributes/per_class/{layer}.tsv",
        damage="results/{model}/ablation/{layer}.units.tsv",
        class_damage="results/{model}/ablation/{layer}.classes.tsv",
        concepts=lambda wildcards: concept_table(wildcards.model, wildcards.layer),
    output:
        correlation="results/{model}/correlation/{layer}.tsv",
        agreement="results/{model}/agreement/{layer}.tsv",
    log:
        "results/logs/correlate/{model}/{layer}.log",
    conda:
        "../envs/correlate.yaml"
    threads: 1
    params:
        code=code("correlate.py"),
        layer="{layer}",
        resamples=int(config["correlation"]["bootstrap"]),
        seed=int(config["correlation"]["seed"]),
        permutations=int(config["correlation"]["permutations"]),
    script:
        "../scripts/correlate.py"


rule combine_correlations:
    input:
        correlation=lambda wildcards: expand(
            "results/{model}/correlation/{layer}.tsv",
            model=wildcards.model,
            layer=LAYER_SPECS[wildcards.model],
        ),
        agreement=lambda wildcards: expand(
            "results/{model}/agreement/{layer}.tsv",
            model=wildcards.model,
            layer=LAYER_SPECS[wildcards.model],
        ),
    output:
        correlation="results/{model}/correlation.tsv",
        agreement="results/{model}/agreement.tsv",
    log:
        "results/logs/combine_correlations/{model}.log",
    conda:
        "../envs/correlate.yaml"
    threads: 1
    params:
        code=code("combine_correlations.py"),
    script:
        "../scripts/combine_correlations.py"
