rule plot_overview:
    input:
        [
            f"results/{model}/ablation/{layer}.units.tsv"
            for model, layer in model_and_layer_pairs()
        ],
    output:
        report(
            "results/figures/overall_vs_max_class_drop.png",
            caption="../report/overview.rst",
            category="Damage",
        ),
    log:
        "results/logs/plot_overview.log",
    conda:
        "../envs/plot.yaml"
    threads: 1
    params:
        labels=[[model, layer] for model, layer in model_and_layer_pairs()],
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_overview.py"


rule plot_layer:
    input:
        attributes="results/{model}/attributes/{layer}.tsv",
        damage="results/{model}/ablation/{layer}.units.tsv",
        class_damage="results/{model}/ablation/{layer}.classes.tsv",
    output:
        attributes=report(
            "results/figures/{model}.{layer}.attributes.png",
            caption="../report/attributes.rst",
            category="Attributes vs damage",
            subcategory="{model}",
        ),
        heatmap=report(
            "results/figures/{model}.{layer}.heatmap.png",
            caption="../report/heatmap.rst",
            category="Class damage heatmaps",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_layer/{model}/{layer}.log",
    conda:
        "../envs/plot.yaml"
    threads: 1
    params:
        title="{model} {layer}",
        dpi=int(config["plots"]["dpi"]),
        heatmap_units=int(config["plots"]["heatmap_units"]),
    script:
        "../scripts/plot_layer.py"
