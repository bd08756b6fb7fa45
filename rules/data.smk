if STUDY.source == "fashion-mnist":

    rule prepare_data:
        input:
            STUDY.idx_files(),
        output:
            STUDY.dataset,
        log:
            "results/logs/prepare_data.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        params:
            code=STUDY.code("prepare_data.py"),
            raw_dir=lambda wildcards, input: str(Path(input[0]).parent),
            heldout_size=int(config["data"]["heldout_size"]),
            train_size=optional_int(config["data"].get("train_size")),
            test_size=optional_int(config["data"].get("test_size")),
            split_seed=int(config["data"]["split_seed"]),
        script:
            "../scripts/prepare_data.py"

else:

    rule decode_images:
        input:
            lambda wildcards: STUDY.image_set_inputs(wildcards.split),
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
            code=STUDY.decode_code(),
            image_set=lambda wildcards: sorted_keys(STUDY.image_sets()[wildcards.split]),
            resize=int(config["data"]["images"]["resize"]),
            crop=int(config["data"]["images"]["crop"]),
        script:
            "../scripts/decode_images.py"

    rule image_dataset:
        input:
            test=STUDY.image_cache("test"),
            heldout=STUDY.image_cache("heldout"),
        output:
            STUDY.dataset,
        log:
            "results/logs/image_dataset.log",
        conda:
            "../envs/torch.yaml"
        threads: 1
        params:
            code=STUDY.code("image_dataset.py"),
        script:
            "../scripts/image_dataset.py"
