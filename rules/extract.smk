rule extract:
    input:
        model="results/models/{model}.pt",
        dataset=DATASET,
    output:
        "results/{model}/activations/{layer}.npz",
    log:
        "results/logs/extract/{model}/{layer}.log",
    conda:
        "../envs/extract.yaml"
    threads: config["threads"]["extract"]
    params:
        layer="{layer}",
        attribute_split=config["analysis"]["attribute_split"],
    script:
        "../scripts/extract.py"
