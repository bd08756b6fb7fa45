rule concept_iou:
    input:
        model="results/models/{model}.pt",
        index=STUDY.concept_index(),
        attributes=attributes_of("units"),
    output:
        units="results/{model}/concepts/{layer_spec}.tsv",
        pairs="results/{model}/concepts/{layer_spec}.pairs.tsv",
    log:
        "results/logs/concept_iou/{model}/{layer_spec}.log",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["extract"]
    params:
        code=STUDY.code("concept_iou.py"),
        layer_spec="{layer_spec}",
        root=config["concepts"]["root"],
        quantile=float(config["concepts"]["quantile"]),
        detector_iou=float(config["concepts"]["detector_iou"]),
        batch_size=int(config["concepts"]["batch_size"]),
    script:
        "../scripts/concept_iou.py"
