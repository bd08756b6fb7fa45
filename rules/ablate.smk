rule ablate:
    input:
        model="results/models/{model}.pt",
        dataset=STUDY.dataset,
    output:
        "results/{model}/ablation/chunks/{layer_spec}/{chunk}.npz",
    log:
        "results/logs/ablate/{model}/{layer_spec}/{chunk}.log",
    cache: True
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["ablate"]
    resources:
        gpu=STUDY.ablation_gpus(),
    params:
        code=STUDY.code("ablate.py"),
        model="{model}",
        layer_spec="{layer_spec}",
        chunk="{chunk}",
        units=lambda wildcards: chunk_units(wildcards.chunk),
        value=lambda wildcards: STUDY.spec_value(wildcards.layer_spec),
        mean_split=lambda wildcards: STUDY.mean_ablation_split(
            STUDY.spec_value(wildcards.layer_spec)
        ),
        batch_size=int(config["ablation"]["batch_size"]),
        units_per_pass=auto_or_number(config["ablation"]["units_per_pass"], int),
        memory_mb=auto_or_number(config["ablation"]["memory_mb"], float),
        plan=config["ablation"]["plan"],
        device=config["ablation"]["device"],
        precision=config["ablation"]["precision"],
    script:
        "../scripts/ablate.py"
