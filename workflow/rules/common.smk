# Wiring shared by all stages: config validation, paths, input functions and constraints.
import os
import re
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
    check_duplicate_keys,
    config_hash,
    git_commit,
    load_schema,
    resolve_path,
    validate_config,
)
from optical_clir.data.artifacts import LOCK_FILE, path_key, remote_artifacts
from optical_clir.retrieval.backends import describe_backends
from optical_clir.systems import SYSTEMS as REGISTRY
from optical_clir.variants import SELECTED, student_job_params, variant_names

# Snakemake's YAML loader keeps the last of two equal keys without a word: refuse them.
check_duplicate_keys(workflow.configfiles)
validate_config(config, load_schema(REPO / "workflow/schemas/config.schema.yaml"), REPO)

# Caches and offline jobs: every job (local or on a cluster node, which inherits this
# process's environment) finds the Hugging Face and ir_datasets caches where the download
# rules put them and, with cache.offline_jobs, never reaches the network.
CACHE = config["cache"]
for key, variable in (("hf_home", "HF_HOME"), ("ir_datasets_home", "IR_DATASETS_HOME")):
    if CACHE[key]:
        os.environ[variable] = os.path.abspath(os.path.expanduser(CACHE[key]))
if CACHE["offline_jobs"]:
    os.environ.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )
# Remote inputs, fetched by the local rules of workflow/rules/download.smk.
ARTIFACTS = {(a.kind, a.key): a for a in remote_artifacts(config, REPO)}

LANGUAGES = list(config["languages"])
COLLECTIONS = list(config["collections"])
SYSTEMS = list(config["evaluation"]["systems"])
LABELS = {key: system.label for key, system in REGISTRY.items()}
CONFIG_HASH = config_hash(config)
GIT_COMMIT = git_commit(REPO)
# Printed under every table (with the package versions): which config and code made it,
# what was downloaded (the lock file's revisions) and how the dense runs searched.
PROVENANCE = {
    "config_hash": CONFIG_HASH,
    "git_commit": GIT_COMMIT,
    "downloads": LOCK_FILE if ARTIFACTS else None,
    "dense_search": describe_backends(config["dense"], COLLECTIONS),
}


METHODS = list(config["distill"]["methods"])
# Every student is trained once per seed (our choice: teacher and NMT once, with `seed`).
DISTILL_SEEDS = list(config["distill"].get("seeds", [config["seed"]]))
FIRST_SEED = DISTILL_SEEDS[0]
CURVE = config["distill"].get("learning_curve") or {}
CURVE_SIZES = sorted(CURVE.get("sizes", []))
CURVE_METHODS = list(CURVE.get("methods", METHODS)) if CURVE_SIZES else []
NMT_SYSTEMS = list(config["nmt"]["systems"])
TABLE_NMT = config["nmt"]["table_system"]
# Variant lists: the candidates of the dev-criterion selection, and the ablation's.
SELECT = config["distill"].get("select", {})
ABLATION = config.get("ablation", {})


def candidates(method):
    """The students the dev criterion chooses among for ``method`` (default first)."""
    return variant_names(method, SELECT.get(method, {}))


def ablation_students(method):
    return variant_names(method, ABLATION.get(method, {}))


def table_student(method):
    """The student of a method's table row: the selected candidate, or the default."""
    return f"{method}{SELECTED}" if method in SELECT else method


STUDENTS = sorted(
    {
        *[table_student(m) for m in METHODS],
        *[s for m in METHODS for s in (*candidates(m), *ablation_students(m))],
    }
)


wildcard_constraints:
    lang="|".join(LANGUAGES),
    collection="|".join(COLLECTIONS),
    system="|".join(REGISTRY),
    method="|".join(METHODS),
    student="|".join(re.escape(s) for s in STUDENTS),
    encoder="|".join(["teacher", *(re.escape(s) for s in STUDENTS)]),
    nmt="|".join(NMT_SYSTEMS),
    qset=r"[A-Za-z0-9_\-.]+",
    pairs=r"all|[0-9]+",
    seed=r"[0-9]+",


# ------------------------------------------------------------------ resources

RESOURCES = config["resources"]
# OPTICAL_SLURM_GRES (e.g. "gpu" or "gpu:a100"): ask for GPUs as a generic resource
# (sbatch --gres=<that>:N) instead of --gpus=N, for clusters that only know GRES.
SLURM_GRES = os.environ.get("OPTICAL_SLURM_GRES", "").strip()


def gpu_request(gpus):
    """A GPU rule's `gpu: N`, or `gres: <OPTICAL_SLURM_GRES>:N` (and gpu 0) when set."""
    gpus = int(gpus)
    if SLURM_GRES and gpus > 0:
        return {"gpu": 0, "gres": f"{SLURM_GRES}:{gpus}"}
    return {"gpu": gpus}


def _grows(base, cap):
    def value(wildcards, attempt):
        amount = int(base) * int(attempt)
        return min(amount, int(cap)) if cap else amount

    return value


def mem_mb(base):
    """Memory that grows with the attempt (base x attempt: a job killed at its memory
    limit gets more on its retry), capped at resources.max_mem_mb."""
    return _grows(base, RESOURCES["max_mem_mb"])


def runtime(base):
    """Minutes that grow with the attempt, capped at resources.max_runtime."""
    return _grows(base, RESOURCES["max_runtime"])


# ------------------------------------------------------------------ downloads


def artifact_markers(kind, names):
    """The download records of the remote inputs ``names`` of ``kind`` (none if local)."""
    keys = [(kind, path_key(name)) for name in names]
    return [ARTIFACTS[key].marker for key in keys if key in ARTIFACTS]


def artifact_params(wildcards):
    artifact = ARTIFACTS[(wildcards.kind, wildcards.key)]
    return {
        "kind": artifact.kind,
        "key": artifact.key,
        "spec": artifact.spec,
        "where": artifact.where,
    }


def collection_artifacts(wildcards):
    spec = config["collections"][wildcards.collection]
    ids = [spec["dataset"]] if spec.get("source") == "ir_datasets" else []
    ids += [q["ir_datasets"] for q in spec["queries"].values() if isinstance(q, dict)]
    return artifact_markers("ir_datasets", ids)


def triples_artifacts(wildcards):
    return [
        a.marker
        for a in ARTIFACTS.values()
        if a.kind in ("ir_datasets", "url") and "mmarco.source.source" in a.where
    ]


def hub_artifacts(model):
    return artifact_markers("huggingface", [model])


def teacher_artifacts(wildcards):
    return hub_artifacts(config["teacher"]["model"]["backbone"])


def bitext_artifacts(lang):
    return [
        a.marker
        for a in ARTIFACTS.values()
        if a.kind == "opus" and f"languages.{lang}.bitext.source" in a.where
    ]


def repo_path(path):
    """A config input path, resolved against the repository root."""
    return str(resolve_path(path, REPO))


def collection_of(lang):
    return config["languages"][lang]["collection"]


def has_english(lang):
    return "en" in config["collections"][collection_of(lang)]["queries"]


def collection_languages(collection):
    return [lang for lang in LANGUAGES if collection_of(lang) == collection]


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
        elif "path" in queries:
            files[f"queries_{lang}"] = repo_path(queries["path"])
    return files


def collection_spec(wildcards):
    """The collection's config with local paths resolved."""
    spec = dict(config["collections"][wildcards.collection])
    if spec.get("source", "local") == "local":
        for key in ("docs", "qrels"):
            spec[key] = repo_path(spec[key])
    spec["queries"] = {
        lang: (
            repo_path(q)
            if isinstance(q, str)
            else {**q, "path": repo_path(q["path"])} if "path" in q else q
        )
        for lang, q in spec["queries"].items()
    }
    return spec


def queries_path(lang):
    """A language's normalised queries (``en`` for the collection of ``lang``)."""
    return f"results/data/collections/{collection_of(lang)}/queries/{lang}.tsv"


def qrels_per_language(collection):
    return config["collections"][collection].get("qrels") == "per_language"


def qrels_path(lang):
    """The qrels a language is judged on: its own with per-language qrels, else the shared."""
    collection = collection_of(lang)
    if qrels_per_language(collection):
        return f"results/data/collections/{collection}/qrels/{lang}.txt"
    return f"results/data/collections/{collection}/qrels.txt"


def english_queries_path(lang):
    return f"results/data/collections/{collection_of(lang)}/queries/en.tsv"


# ---------------------------------------------------------------- runs of the systems


def bm25_query_sets(collection):
    """Every query set BM25 searches for a collection: ``{qset: (kind, queries file)}``."""
    wanted = {REGISTRY[s].queries for s in SYSTEMS if REGISTRY[s].retriever == "bm25"}
    langs = collection_languages(collection)
    sets = {}
    if "english" in wanted and "en" in config["collections"][collection]["queries"]:
        sets["en"] = ("text", f"results/data/collections/{collection}/queries/en.tsv")
    for lang in langs:
        if "raw" in wanted:
            sets[lang] = ("text", queries_path(lang))
        if "nmt" in wanted:
            sets[f"{lang}.nmt-{TABLE_NMT}"] = (
                "text",
                f"results/translations/{TABLE_NMT}/{lang}.en.tsv",
            )
        if "psq" in wanted:
            sets[f"{lang}.psq"] = ("psq", f"results/translations/psq/{lang}.jsonl")
    return sets


def bm25_search_inputs(collection):
    sets = bm25_query_sets(collection)
    return {
        "index": f"results/indexes/bm25/{collection}",
        **{f"queries_{qset}": path for qset, (_, path) in sets.items()},
    }


def bm25_runs(collection):
    return [
        f"results/runs/{collection}/bm25/{qset}.trec"
        for qset in bm25_query_sets(collection)
    ]


def bm25_search_sets(collection):
    return [
        {"qset": qset, "kind": kind, "queries": path, "run": run}
        for (qset, (kind, path)), run in zip(
            bm25_query_sets(collection).items(), bm25_runs(collection)
        )
    ]


def run_path(system, lang):
    """The TREC run of a system built once, for the queries of language ``lang``."""
    collection = collection_of(lang)
    qset = {
        "english": "en",
        "raw": lang,
        "nmt": f"{lang}.nmt-{TABLE_NMT}",
        "psq": f"{lang}.psq",
    }[REGISTRY[system].queries]
    retriever = "bm25" if REGISTRY[system].retriever == "bm25" else "teacher"
    return f"results/runs/{collection}/{retriever}/{qset}.trec"


def student_dir(student, lang, pairs="all", seed=FIRST_SEED):
    """A student query encoder: ``pairs`` training pairs (``all`` or N), one seed."""
    return f"results/models/student/{student}/{lang}/pairs-{pairs}/seed-{seed}"


def student_run(student, lang, pairs="all", seed=FIRST_SEED):
    return f"results/runs/student/{student}/{lang}/pairs-{pairs}/seed-{seed}.trec"


def student_eval(student, lang, pairs="all", seed=FIRST_SEED):
    return f"results/eval/{lang}/{student}/pairs-{pairs}/seed-{seed}.tsv"


def system_evals(lang, system):
    """The per-query measures of a table cell: one file, one per seed for a student, or none
    for an English-query system where the collection has no English queries (cell "–").
    """
    if REGISTRY[system].needs_english and not has_english(lang):
        return []
    if REGISTRY[system].is_student:
        student = table_student(system)
        return [
            {"seed": seed, "path": student_eval(student, lang, "all", seed)}
            for seed in DISTILL_SEEDS
        ]
    return [{"seed": None, "path": f"results/eval/{lang}/{system}.tsv"}]


# ------------------------------------------------------------------ training inputs


def triples_source(wildcards):
    """The triples source config, with a local path resolved against the repository; a URL
    is read from the copy the download rule made."""
    from optical_clir.data.artifacts import url_cache_path

    source = dict(config["mmarco"]["source"])
    for artifact in ARTIFACTS.values():
        if artifact.kind == "url" and "mmarco.source.source" in artifact.where:
            return {**source, "source": str(url_cache_path(artifact)), "kind": "tsv"}
    if source.get("kind", "auto") in ("auto", "tsv") and "://" not in source["source"]:
        if not source["source"].startswith(("hf:", "irds:")):
            source["source"] = repo_path(source["source"])
    return source


def triples_source_files(wildcards):
    """A local triples file is an input (so edits rerun the teacher); remote ones are
    inputs through their download records."""
    if triples_artifacts(wildcards):
        return {}
    source = triples_source(wildcards)
    return {"triples": source["source"]} if Path(source["source"]).is_file() else {}


def train_params(section):
    """A training section's settings, with the workflow's seed unless the section sets one."""
    train = dict(config[section]["train"])
    train.setdefault("seed", config["seed"])
    return train


def teacher_train_params(wildcards):
    return train_params("teacher")


def distill_inputs(wildcards):
    """Bitext and teacher; a selected student's learning-curve runs also read the choice."""
    inputs = {
        "bitext": f"results/data/bitext/{wildcards.lang}",
        "teacher": "results/models/teacher",
    }
    if wildcards.student.endswith(SELECTED):
        method = wildcards.student[: -len(SELECTED)]
        inputs["selection"] = f"results/selection/{method}/{wildcards.lang}.json"
    return inputs


def distill_params(wildcards):
    """The student's settings (of each candidate for a selected student), its seed and
    bitext subset: see optical_clir.variants.student_job_params."""
    student = wildcards.student
    method = student[: -len(SELECTED)] if student.endswith(SELECTED) else None
    return student_job_params(
        config["distill"],
        [SELECT, ABLATION],
        student,
        wildcards.lang,
        int(wildcards.seed),
        None if wildcards.pairs == "all" else int(wildcards.pairs),
        candidates(method) if method else (),
    )


def selection_inputs(wildcards):
    return [
        student_dir(c, wildcards.lang, "all", seed)
        for c in candidates(wildcards.method)
        for seed in DISTILL_SEEDS
    ]


def candidate_names(wildcards):
    return candidates(wildcards.method)


def default_optical_loss():
    """The OT settings of the zero-shot teacher's plans (a student's own are in its folder)."""
    from optical_clir.variants import student_settings

    return student_settings(config["distill"], "optical", {})[0]


def dense_backend(collection):
    dense = config["dense"]
    return dense["backend_by_collection"].get(collection, dense["backend"])


def dense_index_inputs(collection):
    """The dense index of a collection, and its candidate-stage index if it has one."""
    inputs = {"index": f"results/indexes/dense/{collection}"}
    if dense_backend(collection) == "faiss_ivf":
        inputs["ann"] = f"results/indexes/dense_ann/{collection}"
    return inputs


def dense_encode_params():
    dense = config["dense"]
    keys = (
        "batch_size",
        "shard_size",
        "dtype",
        "precision",
        "loader_workers",
        "device",
    )
    return {key: dense[key] for key in keys}


def dense_search_params(collection):
    """What a search job of ``collection`` needs (its own backend's settings only)."""
    dense = config["dense"]
    keys = ("depth", "device", "precision", "sim_elements", "block_docs")
    params = {key: dense[key] for key in keys}
    params["backend"] = dense_backend(collection)
    if params["backend"] == "faiss_ivf":
        params["ann"] = {
            key: dense["ann"][key] for key in ("nprobe", "k_tokens", "query_chunk")
        }
    return params


def ann_build_params(wildcards):
    ann = config["dense"]["ann"]
    return {
        **{key: ann[key] for key in ("nlist", "pq_m", "train_vectors")},
        "seed": config["seed"],
    }


def teacher_search_params(wildcards):
    return dense_search_params(wildcards.collection)


def student_search_params(wildcards):
    return dense_search_params(collection_of(wildcards.lang))


def student_search_inputs(wildcards):
    collection = collection_of(wildcards.lang)
    return {
        "model": student_dir(
            wildcards.student, wildcards.lang, wildcards.pairs, wildcards.seed
        ),
        **dense_index_inputs(collection),
        "queries": queries_path(wildcards.lang),
    }


def alignment_model(wildcards):
    if wildcards.encoder == "teacher":
        return "results/models/teacher"
    return student_dir(wildcards.encoder, wildcards.lang, "all", wildcards.seed)


def bitext_spec(lang):
    return config["languages"][lang]["bitext"]


def bitext_local_files(lang):
    """Local bitext files named in the config (downloads are cached by the rule itself)."""
    source = bitext_spec(lang)["source"]
    return {
        key: repo_path(source[key])
        for key in ("path", "src", "en", "align")
        if key in source
    }


def bitext_inputs(wildcards):
    """Local bitext files, and the evaluation queries that must not leak into the bitext."""
    collection = collection_of(wildcards.lang)
    queries = [
        f"results/data/collections/{collection}/queries/{q}.tsv"
        for q in ("en", wildcards.lang)
        if q in config["collections"][collection]["queries"]
    ]
    return {
        **bitext_local_files(wildcards.lang),
        "queries": queries,
        "artifacts": bitext_artifacts(wildcards.lang),
    }


def bitext_params(wildcards):
    spec = bitext_spec(wildcards.lang)
    source = {**spec["source"], **bitext_local_files(wildcards.lang)}
    sample = dict(spec["sample"])  # the schema's defaults are filled in
    sample.setdefault("seed", config["seed"])
    return {"source": source, "clean": spec["clean"], "sample": sample}


def languages_with_gold_alignment():
    return [
        lang
        for lang in LANGUAGES
        if "align" in config["languages"][lang].get("bitext", {}).get("source", {})
    ]


def evaluation_inputs(wildcards):
    """A run, and the qrels and queries it is judged on; a student's run if set."""
    if "student" in wildcards.keys():
        run = student_run(
            wildcards.student, wildcards.lang, wildcards.pairs, wildcards.seed
        )
    else:
        run = run_path(wildcards.system, wildcards.lang)
    return {
        "run": run,
        "qrels": qrels_path(wildcards.lang),
        "queries": queries_path(wildcards.lang),
    }


def queries_file(collection, qset):
    """A query set: a language's normalised queries, or ``<lang>.nmt-<system>`` translations."""
    if ".nmt-" in qset:
        lang, nmt = qset.split(".nmt-", 1)
        return f"results/translations/{nmt}/{lang}.en.tsv"
    return f"results/data/collections/{collection}/queries/{qset}.tsv"


def teacher_search_inputs(wildcards):
    return {
        "model": "results/models/teacher",
        **dense_index_inputs(wildcards.collection),
        "queries": queries_file(wildcards.collection, wildcards.qset),
    }


def nmt_spec(wildcards):
    return config["nmt"]["systems"][wildcards.nmt]


def nmt_train_params(wildcards):
    """Small-NMT training settings (the workflow's seed unless they set one)."""
    train = dict(nmt_spec(wildcards)["train"])
    train.setdefault("seed", config["seed"])
    return {
        "train": train,
        "language": wildcards.lang,
        "config_key": f"nmt.systems.{wildcards.nmt}.train",
    }


def translate_inputs(wildcards):
    inputs = {"queries": queries_path(wildcards.lang)}
    if nmt_spec(wildcards)["kind"] == "train_small":
        inputs["model"] = f"results/models/nmt/{wildcards.nmt}/{wildcards.lang}"
    else:
        inputs["artifacts"] = hub_artifacts(nmt_spec(wildcards)["model"])
    return inputs


def translate_params(wildcards):
    spec = nmt_spec(wildcards)
    translate = dict(spec.get("translate", {}))
    if spec["kind"] == "train_small":
        translate["model"] = f"results/models/nmt/{wildcards.nmt}/{wildcards.lang}"
    else:
        translate["model"] = spec["model"]
        translate["revision"] = spec.get("revision")
        if "lang_codes" in spec:
            translate["lang_codes"] = spec["lang_codes"]
    return translate


def psq_inputs(wildcards):
    return {
        "bitext": f"results/data/bitext/{wildcards.lang}",
        "queries": queries_path(wildcards.lang),
    }


def languages_with_english_queries():
    return [lang for lang in LANGUAGES if has_english(lang)]


def translation_table_entries(wildcards):
    return [
        {
            "language": lang,
            "system": nmt,
            "translation_tsv": f"results/translations/{nmt}/{lang}.tsv",
            "reference_tsv": english_queries_path(lang),
            "model": (
                f"results/models/nmt/{nmt}/{lang}"
                if config["nmt"]["systems"][nmt]["kind"] == "train_small"
                else None
            ),
        }
        for lang in languages_with_english_queries()
        for nmt in NMT_SYSTEMS
    ]


def translation_table_inputs(wildcards):
    entries = translation_table_entries(wildcards)
    return {
        "downloads": lock_inputs(wildcards),
        "translations": [e["translation_tsv"] for e in entries],
        "references": sorted({e["reference_tsv"] for e in entries}),
        "models": sorted({e["model"] for e in entries if e["model"]}),
    }


# ------------------------------------------------------------------------ tables


def selection_files():
    return [
        f"results/selection/{method}/{lang}.json"
        for method in METHODS
        if method in SELECT
        for lang in LANGUAGES
    ]


def main_table_entries():
    """Every (language, system, seed) of the main table and its per-query measures file."""
    return [
        {"language": lang, "system": system, **entry}
        for lang in LANGUAGES
        for system in SYSTEMS
        for entry in system_evals(lang, system)
    ]


def lock_inputs(wildcards):
    """The download lock file (its revisions are listed under the tables), if any."""
    return [LOCK_FILE] if ARTIFACTS else []


def main_table_inputs(wildcards):
    return {
        "evals": [entry["path"] for entry in main_table_entries()],
        "selections": selection_files(),
        "downloads": lock_inputs(wildcards),
    }


def main_table_params(wildcards):
    evaluation = config["evaluation"]
    return {
        "languages": LANGUAGES,
        "language_names": {l: config["languages"][l]["name"] for l in LANGUAGES},
        "systems": SYSTEMS,
        "labels": {s: LABELS[s] for s in SYSTEMS},
        "measure": evaluation["table_measure"],
        "baselines": evaluation.get("baselines", []),
        "relative_to": evaluation.get("relative_to"),
        "relative_floor": evaluation["relative_floor"],
        "mixed_depth": (
            {"bm25": config["bm25"]["depth"], "dense": config["dense"]["depth"]}
            if evaluation["mixed_depth"]
            else None
        ),
        "correction": evaluation["correction"],
        "alpha": evaluation["alpha"],
        "test": evaluation["test"],
        "randomization": evaluation["randomization"],
        "bootstrap": evaluation.get("bootstrap", {}),
        "config_hash": CONFIG_HASH,
        "git_commit": GIT_COMMIT,
        "downloads": PROVENANCE["downloads"],
        "dense_search": PROVENANCE["dense_search"],
        "entries": main_table_entries(),
    }


def alignment_table_inputs(wildcards):
    """The teacher's alignment accuracy and each table student's, per seed."""
    encoders = [("teacher", [config["seed"]])]
    encoders += [(table_student(method), DISTILL_SEEDS) for method in METHODS]
    return [
        f"results/eval/alignment/{encoder}/{lang}/seed-{seed}.json"
        for lang in languages_with_gold_alignment()
        for encoder, seeds in encoders
        for seed in seeds
    ]


def learning_curve_entries():
    """Every student of the learning curve: subsets and the full bitext, every seed."""
    return [
        {
            "language": lang,
            "method": method,
            "pairs": pairs,
            "seed": seed,
            "eval": student_eval(table_student(method), lang, pairs, seed),
            "model": student_dir(table_student(method), lang, pairs, seed),
        }
        for lang in LANGUAGES
        for method in CURVE_METHODS
        for pairs in [*CURVE_SIZES, "all"]
        for seed in DISTILL_SEEDS
    ]


def learning_curve_references():
    """Horizontal reference lines of the learning curve: the baselines without bitext training."""
    return [
        {
            "language": lang,
            "system": system,
            "path": f"results/eval/{lang}/{system}.tsv",
        }
        for lang in LANGUAGES
        for system in ("teacher_raw", "bm25_nmt", "bm25_psq")
        if system in SYSTEMS
    ]


def learning_curve_inputs(wildcards):
    entries = learning_curve_entries()
    return {
        "evals": [e["eval"] for e in entries],
        "models": sorted({e["model"] for e in entries}),
        "references": [r["path"] for r in learning_curve_references()],
    }


def heatmap_student():
    """The student whose OT plans the heatmaps show: OPTICAL if it is trained."""
    return table_student("optical" if "optical" in METHODS else METHODS[0])


def heatmap_inputs(wildcards):
    return {
        "bitext": f"results/data/bitext/{wildcards.lang}",
        "teacher": "results/models/teacher",
        "student": student_dir(heatmap_student(), wildcards.lang),
    }


def ablation_entries():
    """Every student of the ablation (default and variants), language and seed."""
    return [
        {
            "language": lang,
            "method": method,
            "student": student,
            "seed": seed,
            "eval": student_eval(student, lang, "all", seed),
            "model": student_dir(student, lang, "all", seed),
            "alignment": (
                f"results/eval/alignment/{student}/{lang}/seed-{seed}.json"
                if lang in languages_with_gold_alignment()
                else None
            ),
        }
        for lang in LANGUAGES
        for method in METHODS
        if method in ABLATION
        for student in ablation_students(method)
        for seed in DISTILL_SEEDS
    ]


def ablation_inputs(wildcards):
    entries = ablation_entries()
    return {
        "evals": [e["eval"] for e in entries],
        "models": [e["model"] for e in entries],
        "alignments": [e["alignment"] for e in entries if e["alignment"]],
        "zero_shot": [
            f"results/eval/dev_criterion/teacher/{lang}.json" for lang in LANGUAGES
        ],
    }


def final_outputs():
    outputs = [
        *([LOCK_FILE] if ARTIFACTS else []),
        "results/tables/main.md",
        "results/tables/main.csv",
        "results/tables/main.tex",
        "results/tables/measures.csv",
    ]
    if SELECT:
        outputs.append("results/tables/selection.md")
    if languages_with_gold_alignment():
        outputs.append("results/tables/alignment.md")
    if NMT_SYSTEMS and languages_with_english_queries():
        outputs.append("results/tables/translation.md")
    outputs.append("results/figures/map_ci.png")
    outputs += [f"results/figures/ot_heatmap/{lang}.png" for lang in LANGUAGES]
    if CURVE_SIZES:
        outputs += [
            "results/figures/learning_curve.png",
            "results/tables/learning_curve.md",
        ]
    return outputs
