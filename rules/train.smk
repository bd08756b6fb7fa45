rule train:
    input:
        dataset=STUDY.dataset,
    output:
        # one file: a cached entry of several files can be left half stored (docs/clusters.md)
        model="results/models/{model}.pt",
    log:
        "results/logs/train/{model}.log",
    wildcard_constraints:
        model=name_pattern(STUDY.trained),
    cache: True
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["train"]
    params:
        code=STUDY.code("train.py"),
        model="{model}",
        variant=lambda wildcards: STUDY.models[wildcards.model][0],
        train=lambda wildcards: STUDY.train_params(wildcards.model),
    script:
        "../scripts/train.py"


rule model_metadata:
    input:
        model="results/models/{model}.pt",
    output:
        "results/models/{model}.json",
    log:
        "results/logs/model_metadata/{model}.log",
    wildcard_constraints:
        model=name_pattern(STUDY.trained),
    conda:
        "../envs/torch.yaml"
    params:
        code=STUDY.code("model_metadata.py"),
    script:
        "../scripts/model_metadata.py"
