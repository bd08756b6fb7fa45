rule train:
    input:
        dataset=STUDY.dataset,
    output:
        model="results/models/{model}.pt",
        metadata="results/models/{model}.json",
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
