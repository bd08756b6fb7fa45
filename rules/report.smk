rule summarize:
    input:
        metadata=[
            f"results/models/{model}.json"
            for model, _ in STUDY.model_and_layer_spec_pairs()
        ],
        damage=[
            f"results/{model}/ablation/{layer_spec}.units.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        correlations=[
            f"results/{model}/correlation.tsv"
            for model, _ in STUDY.model_and_layer_spec_pairs()
        ],
        agreement=[
            f"results/{model}/agreement.tsv"
            for model, _ in STUDY.model_and_layer_spec_pairs()
        ],
        statistics=[
            f"results/{model}/statistics/{layer_spec}.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        cumulative=STUDY.cumulative_tables(),
    output:
        table=report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        claims=report(
            "results/claims.tsv",
            caption="../report/claims_table.rst",
            category="0. Claims",
        ),
        markdown=report(
            "results/summary.md",
            caption="../report/claims.rst",
            category="0. Claims",
        ),
        seeds=report(
            "results/correlation_seeds.tsv",
            caption="../report/seeds.rst",
            category="Summary",
        ),
    log:
        "results/logs/summarize.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("summarize.py"),
        entries=[
            [model, layer_spec]
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        reference_variant=STUDY.reference_variant(),
        criteria=STUDY.claim_criteria(),
    script:
        "../scripts/summarize.py"


rule record_config:
    output:
        report(
            "results/config.yaml",
            caption="../report/config.rst",
            category="Summary",
        ),
    log:
        "results/logs/record_config.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("record_config.py"),
        config=sorted_keys(config),
    script:
        "../scripts/record_config.py"
