rule correlate:
    input:
        attributes=expand("results/{{model}}/attributes/{layer}.tsv", layer=LAYER_SPECS),
        class_attributes=expand(
            "results/{{model}}/attributes/per_class/{layer}.tsv", layer=LAYER_SPECS
        ),
        damage=expand("results/{{model}}/ablation/{layer}.units.tsv", layer=LAYER_SPECS),
        class_damage=expand(
            "results/{{model}}/ablation/{layer}.classes.tsv", layer=LAYER_SPECS
        ),
        concepts=lambda wildcards: concept_tables(wildcards.model),
    output:
        correlation="results/{model}/correlation.tsv",
        agreement="results/{model}/agreement.tsv",
    log:
        "results/logs/correlate/{model}.log",
    conda:
        "../envs/correlate.yaml"
    threads: 1
    params:
        layers=LAYER_SPECS,
        resamples=int(config["correlation"]["bootstrap"]),
        seed=int(config["correlation"]["seed"]),
        permutations=int(config["correlation"]["permutations"]),
    script:
        "../scripts/correlate.py"
