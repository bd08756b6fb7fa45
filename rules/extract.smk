rule extract:
    input:
        model="results/models/{model}.pt",
        dataset=STUDY.dataset,
    output:
        "results/{model}/activations/{layer_spec}.npz",
    log:
        "results/logs/extract/{model}/{layer_spec}.log",
    cache: True
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["extract"]
    resources:
        gpu=STUDY.ablation_gpus(),
    params:
        code=STUDY.code("extract.py"),
        model="{model}",
        layer_spec="{layer_spec}",
        attribute_split=config["analysis"]["attribute_split"],
        device=config["ablation"]["device"],
        precision=config["ablation"]["precision"],
    script:
        "../scripts/extract.py"
