rule fetch_weights:
    output:
        "resources/weights/{arch}.{enum}.pth",
    log:
        "results/logs/fetch_weights/{arch}.{enum}.log",
    wildcard_constraints:
        arch=r"[a-z0-9_]+",
        enum=r"[A-Z0-9_]+",
    localrule: True
    conda:
        "../envs/torch.yaml"
    params:
        code=STUDY.code("fetch_weights.py"),
        arch="{arch}",
        enum="{enum}",
        weights_mirror=config["weights_mirror"],
    script:
        "../scripts/fetch_weights.py"


rule prepare_model:
    input:
        weights=lambda wildcards: STUDY.weights_file(wildcards.model),
        dataset=STUDY.dataset,
    output:
        model="results/models/{model}.pt",
        metadata="results/models/{model}.json",
    log:
        "results/logs/prepare_model/{model}.log",
    wildcard_constraints:
        model=name_pattern(STUDY.pretrained),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["extract"]
    resources:
        gpu=STUDY.ablation_gpus(),
    params:
        code=STUDY.code("prepare_model.py"),
        model="{model}",
        arch=lambda wildcards: STUDY.pretrained[wildcards.model]["arch"],
        num_classes=lambda wildcards: int(
            STUDY.pretrained[wildcards.model]["num_classes"]
        ),
        weights=lambda wildcards: STUDY.pretrained[wildcards.model]["weights"],
        batch_size=int(config["ablation"]["batch_size"]),
        device=config["ablation"]["device"],
        precision=config["ablation"]["precision"],
        units=lambda wildcards: STUDY.layer_unit_counts(wildcards.model),
    script:
        "../scripts/prepare_model.py"
