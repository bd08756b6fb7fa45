rule correlate:
    input:
        attributes=expand(
            "results/{{model}}/attributes/{layer}.tsv", layer=layer_specs()
        ),
        class_attributes=expand(
            "results/{{model}}/attributes/{layer}.classes.tsv", layer=layer_specs()
        ),
        damage=expand(
            "results/{{model}}/ablation/{layer}.units.tsv", layer=layer_specs()
        ),
        class_damage=expand(
            "results/{{model}}/ablation/{layer}.classes.tsv", layer=layer_specs()
        ),
    output:
        "results/{model}/correlation.tsv",
    log:
        "results/logs/correlate/{model}.log",
    conda:
        "../envs/correlate.yaml"
    threads: 1
    params:
        layers=layer_specs(),
    script:
        "../scripts/correlate.py"
