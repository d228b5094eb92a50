# Wiring shared by all stages: config validation, paths, input functions and constraints.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

REPO = Path(workflow.basedir)
SRC = str(REPO / "src")
# Jobs in any software environment (pip, conda, cluster nodes) import the package from
# this checkout: the workflow and its code always travel together.
if SRC not in sys.path:
    sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        dict.fromkeys(filter(None, [SRC, os.getenv("PYTHONPATH")]))
    )
)

from optical_clir.config import (
    KNOWN_SYSTEMS,
    config_hash,
    load_schema,
    resolve_path,
    validate_config,
)

validate_config(config, load_schema(REPO / "workflow/schemas/config.schema.yaml"), REPO)

LANGUAGES = list(config["languages"])
COLLECTIONS = list(config["collections"])
SYSTEMS = list(config["evaluation"]["systems"])
CONFIG_HASH = config_hash(config)


wildcard_constraints:
    lang="|".join(LANGUAGES),
    collection="|".join(COLLECTIONS),
    system="|".join(KNOWN_SYSTEMS),
    qset=r"[A-Za-z0-9_\-.]+",


def repo_path(path):
    """A config input path, resolved against the repository root."""
    return str(resolve_path(path, REPO))


def collection_of(lang):
    return config["languages"][lang]["collection"]


def collection_sources(wildcards):
    """The local files a collection is read from (none for ir_datasets sources)."""
    spec = config["collections"][wildcards.collection]
    files = {}
    if spec.get("source", "local") == "local":
        files["docs"] = repo_path(spec["docs"])
        files["qrels"] = repo_path(spec["qrels"])
    for lang, queries in spec["queries"].items():
        if isinstance(queries, str):
            files[f"queries_{lang}"] = repo_path(queries)
    return files


def collection_spec(wildcards):
    """The collection's config with local paths resolved."""
    spec = dict(config["collections"][wildcards.collection])
    for key in ("docs", "qrels"):
        if key in spec:
            spec[key] = repo_path(spec[key])
    spec["queries"] = {
        lang: repo_path(q) if isinstance(q, str) else q
        for lang, q in spec["queries"].items()
    }
    return spec


def collection_outputs(collection):
    spec = config["collections"][collection]
    base = f"results/data/collections/{collection}"
    return {
        "docs": f"{base}/docs.jsonl",
        "qrels": f"{base}/qrels.txt",
        "stats": f"{base}/stats.json",
        "queries": [f"{base}/queries/{lang}.tsv" for lang in spec["queries"]],
    }


def run_path(system, lang):
    """The TREC run of ``system`` for the queries of language ``lang``."""
    collection = collection_of(lang)
    if system == "bm25_en":
        return f"results/runs/{collection}/bm25/en.trec"
    if system == "bm25_raw":
        return f"results/runs/{collection}/bm25/{lang}.trec"
    raise ValueError(f"system '{system}' has no run rule yet")


def evaluation_inputs(wildcards):
    collection = collection_of(wildcards.lang)
    return {
        "run": run_path(wildcards.system, wildcards.lang),
        "qrels": f"results/data/collections/{collection}/qrels.txt",
        "queries": f"results/data/collections/{collection}/queries/{wildcards.lang}.tsv",
    }


def bm25_search_inputs(wildcards):
    base = f"results/data/collections/{wildcards.collection}"
    return {
        "index": f"results/indexes/bm25/{wildcards.collection}",
        "queries": f"{base}/queries/{wildcards.qset}.tsv",
    }


def main_table_inputs(wildcards):
    return [
        f"results/eval/{lang}/{system}.tsv" for lang in LANGUAGES for system in SYSTEMS
    ]


def main_table_params(wildcards):
    evaluation = config["evaluation"]
    return {
        "languages": LANGUAGES,
        "language_names": {l: config["languages"][l]["name"] for l in LANGUAGES},
        "systems": SYSTEMS,
        "labels": {s: KNOWN_SYSTEMS[s] for s in SYSTEMS},
        "measure": evaluation["table_measure"],
        "baselines": evaluation.get("baselines", []),
        "relative_to": evaluation.get("relative_to"),
        "correction": evaluation["correction"],
        "alpha": evaluation["alpha"],
        "config_hash": CONFIG_HASH,
    }


def final_outputs():
    return [
        "results/tables/main.md",
        "results/tables/main.csv",
        "results/tables/main.tex",
        "results/tables/measures.csv",
    ]
