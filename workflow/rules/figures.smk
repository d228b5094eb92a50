# Figures: MAP with bootstrap confidence intervals, the learning curve over bitext sizes and
# heatmaps of the OT plans between student and teacher tokens.


rule map_ci_figure:
    input:
        unpack(main_table_inputs),
    output:
        png=report(
            "results/figures/map_ci.png",
            caption="../report/map_ci.rst",
            category="Figures",
        ),
        csv="results/tables/map_ci.csv",
        pdf="results/figures/map_ci.pdf",
    log:
        "results/logs/map_ci_figure/map_ci.log",
    benchmark:
        "results/benchmarks/map_ci_figure/map_ci.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        table=main_table_params,
        bootstrap=config["evaluation"].get("bootstrap", {}),
    script:
        "../scripts/map_ci_figure.py"


rule learning_curve:
    input:
        unpack(learning_curve_inputs),
    output:
        png=report(
            "results/figures/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Figures",
        ),
        md=report(
            "results/tables/learning_curve.md",
            caption="../report/learning_curve_table.rst",
            category="Tables",
        ),
        csv="results/tables/learning_curve.csv",
        pdf="results/figures/learning_curve.pdf",
    log:
        "results/logs/learning_curve/learning_curve.log",
    benchmark:
        "results/benchmarks/learning_curve/learning_curve.tsv"
    conda:
        "../../envs/evaluation.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        entries=learning_curve_entries(),
        references=learning_curve_references(),
        measure=config["evaluation"]["table_measure"],
        language_names={l: config["languages"][l]["name"] for l in LANGUAGES},
        labels=LABELS,
        provenance=PROVENANCE,
    script:
        "../scripts/learning_curve.py"


rule ot_heatmap:
    input:
        unpack(heatmap_inputs),
    output:
        png=report(
            "results/figures/ot_heatmap/{lang}.png",
            caption="../report/ot_heatmap.rst",
            category="Figures",
            subcategory="OT plans",
            labels={"language": "{lang}"},
        ),
        plans="results/figures/ot_heatmap/{lang}.json",
        pdf="results/figures/ot_heatmap/{lang}.pdf",
    log:
        "results/logs/ot_heatmap/{lang}.log",
    benchmark:
        "results/benchmarks/ot_heatmap/{lang}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        loss=default_optical_loss(),
        n_examples=config["evaluation"].get("heatmap_examples", 3),
    script:
        "../scripts/ot_heatmap.py"
