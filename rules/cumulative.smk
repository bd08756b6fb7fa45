rule cumulative:
    input:
        model="results/models/{model}.pt",
        dataset=DATASET,
        class_damage="results/{model}/ablation/{layer}.classes.tsv",
    output:
        "results/{model}/cumulative/{layer}.tsv",
    log:
        "results/logs/cumulative/{model}/{layer}.log",
    conda:
        "../envs/ablate.yaml"
    threads: config["threads"]["ablate"]
    resources:
        gpu=ablation_gpus(),
    params:
        code=code("cumulative.py"),
        model="{model}",
        layer="{layer}",
        classes=config["cumulative"]["classes"],
        max_units=int(config["cumulative"]["max_units"]),
        random_draws=int(config["cumulative"]["random_draws"]),
        seed=int(config["cumulative"]["seed"]),
        value=config["ablation"]["value"],
        mean_split=mean_ablation_split(),
        batch_size=int(config["ablation"]["batch_size"]),
        device=config["ablation"]["device"],
    script:
        "../scripts/cumulative.py"
