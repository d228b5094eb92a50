# OPTICAL: cross-lingual retrieval for low-resource languages by optimal transport
# distillation, from raw data to the paper's tables. See README.md.
from pathlib import Path

# The embedded demo is the default configuration; a --configfile on the command line
# replaces it (rather than being merged into it), so that paper and demo never mix.
if not workflow.overwrite_configfiles:

    configfile: Path(workflow.basedir) / "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/collections.smk"
include: "workflow/rules/bm25.smk"
include: "workflow/rules/nmt.smk"
include: "workflow/rules/mmarco.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/bitext.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


# OPTICAL's and KD-MSE's variants side by side (config `ablation`); not part of `all`.
rule ablation:
    input:
        "results/tables/ablation.md",
        "results/figures/ablation.png",
