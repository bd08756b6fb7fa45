rule gather:
    input:
        chunks=lambda wildcards: expand(
            "results/{model}/ablation/chunks/{layer_spec}/{chunk}.npz",
            model=wildcards.model,
            layer_spec=wildcards.layer_spec,
            chunk=STUDY.chunks(wildcards.model, wildcards.layer_spec),
        ),
        dataset=STUDY.dataset,
    output:
        classes="results/{model}/ablation/{layer_spec}.classes.tsv",
        units="results/{model}/ablation/{layer_spec}.units.tsv",
    log:
        "results/logs/gather/{model}/{layer_spec}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("gather.py"),
        damage_thresholds=[float(t) for t in config["analysis"]["damage_thresholds"]],
        fdr_alpha=float(config["analysis"]["fdr_alpha"]),
        fdr_method=config["analysis"]["fdr_method"],
    script:
        "../scripts/gather.py"
