rule summarize:
    input:
        metadata=[
            f"results/models/{model}.json" for model, _ in model_and_layer_pairs()
        ],
        damage=[
            f"results/{model}/ablation/{layer}.units.tsv"
            for model, layer in model_and_layer_pairs()
        ],
        correlations=[
            f"results/{model}/correlation.tsv" for model, _ in model_and_layer_pairs()
        ],
        agreement=[
            f"results/{model}/agreement.tsv" for model, _ in model_and_layer_pairs()
        ],
    output:
        report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "results/logs/summarize.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    params:
        entries=[[model, layer] for model, layer in model_and_layer_pairs()],
    script:
        "../scripts/summarize.py"
