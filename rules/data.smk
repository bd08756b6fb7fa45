rule prepare_data:
    input:
        [f"{data_root()}/{name}" for name in IDX_NAMES],
    output:
        DATASET,
    log:
        "results/logs/prepare_data.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    params:
        code=code("prepare_data.py"),
        raw_dir=lambda wildcards, input: str(Path(input[0]).parent),
        heldout_size=int(config["data"]["heldout_size"]),
        train_size=optional_int(config["data"].get("train_size")),
        test_size=optional_int(config["data"].get("test_size")),
        seed=int(config["data"]["split_seed"]),
    script:
        "../scripts/prepare_data.py"
