rule train:
    input:
        dataset=DATASET,
    output:
        model="results/models/{model}.pt",
        metadata="results/models/{model}.json",
    log:
        "results/logs/train/{model}.log",
    wildcard_constraints:
        model=name_pattern(TRAINED),
    cache: True
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["train"]
    params:
        code=code("train.py"),
        model="{model}",
        variant=lambda wildcards: MODELS[wildcards.model][0],
        train=train_params,
    script:
        "../scripts/train.py"
