rule attributes:
    input:
        activations="results/{model}/activations/{layer}.npz",
        model="results/models/{model}.pt",
    output:
        units="results/{model}/attributes/{layer}.tsv",
        classes="results/{model}/attributes/per_class/{layer}.tsv",
    log:
        "results/logs/attributes/{model}/{layer}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    params:
        code=STUDY.code("attributes.py"),
        layer="{layer}",
    script:
        "../scripts/attributes.py"
