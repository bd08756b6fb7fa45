if SOURCE == "fashion-mnist":

    rule prepare_data:
        input:
            [f"{data_root()}/{name}" for name in IDX_NAMES],
        output:
            DATASET,
        log:
            "results/logs/prepare_data.log",
        conda:
            "../envs/torch.yaml"
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

else:

    rule decode_images:
        input:
            lambda wildcards: image_set_inputs(wildcards.split),
        output:
            directory("results/data/images/{split}"),
        log:
            "results/logs/decode_images/{split}.log",
        wildcard_constraints:
            split="test|heldout",
        conda:
            "../envs/torch.yaml"
        threads: config["data"]["images"]["workers"]
        params:
            code=code("decode_images.py"),
            image_set=lambda wildcards: sorted_keys(image_sets()[wildcards.split]),
            resize=int(config["data"]["images"]["resize"]),
            crop=int(config["data"]["images"]["crop"]),
        script:
            "../scripts/decode_images.py"

    rule image_dataset:
        input:
            test=image_cache("test"),
            heldout=image_cache("heldout"),
        output:
            DATASET,
        log:
            "results/logs/image_dataset.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        params:
            code=code("image_dataset.py"),
        script:
            "../scripts/image_dataset.py"
