rule gather:
    input:
        chunks=lambda wildcards: expand(
            "results/{model}/ablation/chunks/{layer}/{chunk}.npz",
            model=wildcards.model,
            layer=wildcards.layer,
            chunk=STUDY.chunks(wildcards.model, wildcards.layer),
        ),
        dataset=STUDY.dataset,
    output:
        classes="results/{model}/ablation/{layer}.classes.tsv",
        units="results/{model}/ablation/{layer}.units.tsv",
    log:
        "results/logs/gather/{model}/{layer}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("gather.py"),
        thresholds=[float(t) for t in config["analysis"]["damage_thresholds"]],
        fdr_alpha=float(config["analysis"]["fdr_alpha"]),
        fdr_method=config["analysis"].get("fdr_method", "mid-p"),
    script:
        "../scripts/gather.py"
