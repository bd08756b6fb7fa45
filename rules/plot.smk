# Figures: a PNG for the report and a PDF for papers each, numbered as in issue 4.


rule plot_overview:
    input:
        [
            f"results/{model}/ablation/{layer_spec}.units.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
    output:
        png=report(
            "results/figures/overall_vs_max_class_drop.png",
            caption="../report/overview.rst",
            category="1. Damage",
        ),
        pdf="results/figures/overall_vs_max_class_drop.pdf",
    log:
        "results/logs/plot_overview.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_overview.py"),
        labels=[
            [model, layer_spec]
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_overview.py"


rule plot_sorted_units:
    input:
        lambda wildcards: expand(
            "results/{model}/ablation/{layer_spec}.units.tsv",
            model=wildcards.model,
            layer_spec=STUDY.layer_specs[wildcards.model],
        ),
    output:
        png=report(
            "results/figures/{model}.sorted_units.png",
            caption="../report/sorted_units.rst",
            category="2. Units sorted by class damage",
        ),
        pdf="results/figures/{model}.sorted_units.pdf",
    log:
        "results/logs/plot_sorted_units/{model}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_sorted_units.py"),
        layer_specs=lambda wildcards: STUDY.layer_specs[wildcards.model],
        title="{model}",
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_sorted_units.py"


rule plot_layer:
    input:
        attributes=attributes_of("units"),
        damage="results/{model}/ablation/{layer_spec}.units.tsv",
        class_damage="results/{model}/ablation/{layer_spec}.classes.tsv",
        correlation="results/{model}/correlation/{layer_spec}.tsv",
    output:
        attributes=report(
            "results/figures/{model}.{layer_spec}.attributes.png",
            caption="../report/attributes.rst",
            category="3. Attributes vs damage",
            subcategory="{model}",
        ),
        attributes_pdf="results/figures/{model}.{layer_spec}.attributes.pdf",
        heatmap=report(
            "results/figures/{model}.{layer_spec}.heatmap.png",
            caption="../report/heatmap.rst",
            category="4. Class damage heatmaps",
            subcategory="{model}",
        ),
        heatmap_pdf="results/figures/{model}.{layer_spec}.heatmap.pdf",
    log:
        "results/logs/plot_layer/{model}/{layer_spec}.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_layer.py"),
        layer_spec="{layer_spec}",
        title="{model} {layer_spec}",
        dpi=int(config["plots"]["dpi"]),
        heatmap_units=int(config["plots"]["heatmap_units"]),
    script:
        "../scripts/plot_layer.py"


rule plot_comparison:
    input:
        units=[
            f"results/{model}/ablation/{layer_spec}.units.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        attributes=[
            f"results/{model}/attributes/{parse_layer_spec(layer_spec).attribute_spec}.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        correlations=[
            f"results/{model}/correlation.tsv"
            for model, _ in STUDY.model_and_layer_spec_pairs()
        ],
    output:
        png=report(
            "results/figures/variants_and_bases.png",
            caption="../report/comparison.rst",
            category="5. Variants and bases",
        ),
        pdf="results/figures/variants_and_bases.pdf",
    log:
        "results/logs/plot_comparison.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_comparison.py"),
        entries=[
            [model, STUDY.models[model][0], layer_spec]
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_comparison.py"


rule plot_agreement:
    input:
        [
            f"results/{model}/agreement.tsv"
            for model, _ in STUDY.model_and_layer_spec_pairs()
        ],
    output:
        png=report(
            "results/figures/selective_vs_damaged_class.png",
            caption="../report/agreement.rst",
            category="6. Selective vs damaged class",
        ),
        pdf="results/figures/selective_vs_damaged_class.pdf",
    log:
        "results/logs/plot_agreement.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_agreement.py"),
        entries=[
            [model, layer_spec]
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_agreement.py"


rule plot_cumulative:
    input:
        STUDY.cumulative_tables(),
    output:
        png=report(
            "results/figures/cumulative_ablation.png",
            caption="../report/cumulative.rst",
            category="7. Cumulative ablation",
        ),
        pdf="results/figures/cumulative_ablation.pdf",
    log:
        "results/logs/plot_cumulative.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_cumulative.py"),
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_cumulative.py"


rule plot_network_effects:
    input:
        [
            f"results/{model}/statistics/{layer_spec}.tsv"
            for model, layer_spec in STUDY.model_and_layer_spec_pairs()
        ],
    output:
        png=report(
            "results/figures/network_effects.png",
            caption="../report/network_effects.rst",
            category="0. Claims",
        ),
        pdf="results/figures/network_effects.pdf",
    log:
        "results/logs/plot_network_effects.log",
    conda:
        "../envs/analysis.yaml"
    threads: 1
    params:
        code=STUDY.code("plot_network_effects.py"),
        dpi=int(config["plots"]["dpi"]),
    script:
        "../scripts/plot_network_effects.py"
