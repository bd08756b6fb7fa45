rule attributes:
    input:
        activations="results/{model}/activations/{layer_spec}.npz",
        model="results/models/{model}.pt",
    output:
        units="results/{model}/attributes/{layer_spec}.tsv",
        classes="results/{model}/attributes/per_class/{layer_spec}.tsv",
    log:
        "results/logs/attributes/{model}/{layer_spec}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    params:
        code=STUDY.code("attributes.py"),
        layer_spec="{layer_spec}",
    script:
        "../scripts/attributes.py"
