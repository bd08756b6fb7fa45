rule extract:
    input:
        model="results/models/{model}.pt",
        dataset=STUDY.dataset,
    output:
        "results/{model}/activations/{layer}.npz",
    log:
        "results/logs/extract/{model}/{layer}.log",
    cache: True
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["extract"]
    resources:
        gpu=STUDY.ablation_gpus(),
    params:
        code=STUDY.code("extract.py"),
        model="{model}",
        layer="{layer}",
        attribute_split=config["analysis"]["attribute_split"],
        device=config["ablation"]["device"],
        precision=config["ablation"]["precision"],
    script:
        "../scripts/extract.py"
