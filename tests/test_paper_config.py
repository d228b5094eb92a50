"""config/paper.yaml: valid, every value tagged paper/ours, and its whole DAG builds offline.

The dry run checks the job count of every rule against counts derived from the config (the
formulas are in ``EXPECTED_JOBS``: update them there when the rules change). The licensed
CLEF files do not exist here: the test writes placeholders and points a copy of the config
at them. The dry run runs with every internet connection refused, so building the DAG of
the ir_datasets, OPUS and Hugging Face sources must not download anything.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from optical_clir.config import load_schema, validate_config

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config/paper.yaml"
DEMO = REPO / "config/config.yaml"
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ local input files


def local_inputs(cfg: dict) -> list[tuple[dict, str]]:
    """Every local input path of the config, as (mapping holding it, key)."""
    found = []
    for coll in cfg["collections"].values():
        if coll.get("source", "local") == "local":
            found += [(coll, key) for key in ("docs", "qrels") if key in coll]
        found += [
            (coll["queries"], lang) for lang, q in coll["queries"].items() if isinstance(q, str)
        ]
    for spec in cfg["languages"].values():
        source = spec.get("bitext", {}).get("source", {})
        found += [(source, key) for key in ("path", "src", "en", "align") if key in source]
    return found


def write_placeholders(cfg: dict, root: Path) -> dict:
    """Create a one-line placeholder for every local input under ``root``; return a copy of
    ``cfg`` that names them by absolute path (inputs that exist in the repository stay)."""
    cfg = copy.deepcopy(cfg)
    for holder, key in local_inputs(cfg):
        if Path(holder[key]).is_absolute() or (REPO / holder[key]).exists():
            continue
        target = root / holder[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("placeholder\tplaceholder\n", encoding="utf-8")
        holder[key] = str(target)
    return cfg


# ------------------------------------------------------------------ expected job counts


@dataclass
class Dag:
    """What the config asks for, in the terms the rules use (workflow/rules/common.smk)."""

    cfg: dict

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.langs = list(cfg["languages"])
        self.coll_of = {lang: cfg["languages"][lang]["collection"] for lang in self.langs}
        self.collections = sorted(set(self.coll_of.values()))
        self.systems = list(cfg["evaluation"]["systems"])
        self.methods = list(cfg["distill"]["methods"])
        self.table_nmt = cfg["nmt"]["table_system"]
        self.nmt = cfg["nmt"]["systems"]
        self.has_en = {
            lang: "en" in cfg["collections"][self.coll_of[lang]]["queries"] for lang in self.langs
        }
        self.gold = [
            lang
            for lang in self.langs
            if "align" in cfg["languages"][lang].get("bitext", {}).get("source", {})
        ]
        distill = cfg["distill"]
        self.seeds = list(distill.get("seeds", [cfg["seed"]]))
        curve = distill.get("learning_curve") or {}
        self.sizes = sorted(curve.get("sizes", []))
        self.curve_methods = list(curve.get("methods", self.methods)) if self.sizes else []
        self.select = distill.get("select", {})

    def table_student(self, method: str) -> str:
        return f"{method}+selected" if method in self.select else method

    def candidates(self, method: str) -> list[str]:
        grid = self.select.get(method, {})
        return [method] + [f"{method}+{k}-{v}" for k, vs in grid.items() for v in vs]

    def searches(self, engine: str) -> set[tuple[str, str]]:
        """(collection, query set) searched by ``engine`` (bm25 or teacher)."""
        runs = set()
        for lang, coll in self.coll_of.items():
            if f"{engine}_en" in self.systems and self.has_en[lang]:
                runs.add((coll, "en"))
            if f"{engine}_raw" in self.systems:
                runs.add((coll, lang))
            if f"{engine}_nmt" in self.systems:
                runs.add((coll, f"{lang}.nmt-{self.table_nmt}"))
            if f"{engine}_psq" in self.systems:
                runs.add((coll, f"{lang}.psq"))
        return runs

    def translations(self) -> set[tuple[str, str]]:
        """(NMT system, language): the table's system for "+ NMT" rows, every system for BLEU."""
        needed = set()
        if {"bm25_nmt", "teacher_nmt"} & set(self.systems):
            needed |= {(self.table_nmt, lang) for lang in self.langs}
        needed |= {(nmt, lang) for lang in self.langs if self.has_en[lang] for nmt in self.nmt}
        return needed

    def small_nmt_models(self) -> set[tuple[str, str]]:
        return {
            (n, lang) for n, lang in self.translations() if self.nmt[n]["kind"] == "train_small"
        }

    def student_runs(self) -> set[tuple[str, str, str | int, int]]:
        """(student, language, pairs, seed) searched and evaluated: table rows and the curve."""
        rows = {
            (self.table_student(m), lang, "all", seed)
            for m in self.methods
            if m in self.systems
            for lang in self.langs
            for seed in self.seeds
        }
        rows |= {
            (self.table_student(m), lang, pairs, seed)
            for m in self.curve_methods
            for lang in self.langs
            for pairs in [*self.sizes, "all"]
            for seed in self.seeds
        }
        return rows

    def students(self) -> set[tuple[str, str, str | int, int]]:
        """Every student distilled: the table's and the curve's, and every candidate of a
        selection (a selected full-bitext student is published, not distilled)."""
        used = self.student_runs() | {
            (self.table_student(m), lang, "all", s) for m in self.methods for lang in self.langs
            for s in self.seeds
        }  # fmt: skip
        trained = {r for r in used if not (r[0].endswith("+selected") and r[2] == "all")}
        trained |= {
            (c, lang, "all", s) for m in self.select for c in self.candidates(m)
            for lang in self.langs for s in self.seeds
        }  # fmt: skip
        return trained

    def table_cells(self) -> int:
        """Non-student (language, system) cells; English-query systems need English queries."""
        return sum(
            1
            for lang in self.langs
            for s in self.systems
            if s not in self.methods and (self.has_en[lang] or s not in ("bm25_en", "teacher_en"))
        )

    def query_files(self) -> set[tuple[str, str]]:
        """(collection, query set) split out of the collection's queries."""
        files = {(coll, lang) for lang, coll in self.coll_of.items()}
        files |= {(coll, q) for coll, q in self.searches("bm25") | self.searches("teacher")}
        files |= {(self.coll_of[lang], "en") for lang in self.langs if self.has_en[lang]}
        return {(coll, q) for coll, q in files if ".nmt-" not in q and not q.endswith(".psq")}

    def bitext_languages(self) -> set[str]:
        return {s[1] for s in self.students()} | {lang for _, lang in self.small_nmt_models()}

    def downloads(self) -> set[tuple[str, str]]:
        """(kind, name) of every remote input: Hub models, ir_datasets ids, OPUS zips."""
        cfg = self.cfg
        found = set()
        backbone = cfg["teacher"]["model"]["backbone"]
        if not backbone.startswith("package:") and not (REPO / backbone).exists():
            found.add(("huggingface", backbone))
        found |= {
            ("huggingface", s["model"]) for s in self.nmt.values() if s["kind"] == "pretrained"
        }
        for coll in cfg["collections"].values():
            if coll.get("source") == "ir_datasets":
                found.add(("ir_datasets", coll["dataset"]))
            found |= {
                ("ir_datasets", q["ir_datasets"]) for q in coll["queries"].values()
                if isinstance(q, dict)
            }  # fmt: skip
        triples = cfg["mmarco"]["source"]["source"]
        if triples.startswith("irds:"):
            found.add(("ir_datasets", triples.removeprefix("irds:")))
        for spec in cfg["languages"].values():
            src = spec.get("bitext", {}).get("source", {})
            if src.get("kind") == "opus":
                pair = "-".join(sorted((src["src_lang"], src.get("en_lang", "en"))))
                found.add(("opus", f"{src['corpus']}-{src['version']}.{pair}"))
        return found

    def split_qrels(self) -> set[tuple[str, str]]:
        """(collection, language) whose qrels are the language's own (``qrels: per_language``)."""
        return {
            (coll, lang)
            for lang, coll in self.coll_of.items()
            if self.cfg["collections"][coll].get("qrels") == "per_language"
        }

    def ann_collections(self) -> set[str]:
        """Collections searched through the faiss_ivf candidate stage."""
        dense = self.cfg["dense"]
        by = dense.get("backend_by_collection", {})
        return {c for c in self.collections if by.get(c, dense["backend"]) == "faiss_ivf"}


# One formula per rule: the number of jobs a dry run of the whole DAG schedules. Keep in step
# with workflow/rules/ (seeds and learning-curve sizes will multiply the student rules).
EXPECTED_JOBS: dict[str, Callable[[Dag], int]] = {
    "prepare_collection": lambda d: len(d.collections),
    "split_queries": lambda d: len(d.query_files()),
    "split_qrels": lambda d: len(d.split_qrels()),
    "index_bm25": lambda d: len(d.collections),
    **{
        f"search_bm25_{c}": lambda d, c=c: int(any(coll == c for coll, _ in d.searches("bm25")))
        for c in ("demo", "clef", "clirmatrix_en")
    },
    "prepare_triples": lambda d: 1,
    "train_teacher": lambda d: 1,
    "download_artifact": lambda d: len(d.downloads()),
    "download": lambda d: int(bool(d.downloads())),
    "encode_documents": lambda d: len(d.collections),
    "index_dense_ann": lambda d: len(d.ann_collections()),
    "search_dense_teacher": lambda d: len(d.searches("teacher")),
    "prepare_bitext": lambda d: len(d.bitext_languages()),
    "distill_student": lambda d: len(d.students()),  # (candidates x languages + curve) x seeds
    "select_student": lambda d: len(d.select) * len(d.langs),
    "publish_selected_student": lambda d: len(d.select) * len(d.langs) * len(d.seeds),
    "selection_table": lambda d: int(bool(d.select)),
    "train_psq": lambda d: len(d.langs) if "bm25_psq" in d.systems else 0,
    "search_dense_student": lambda d: len(d.student_runs()),
    "evaluate_student_run": lambda d: len(d.student_runs()),
    "alignment_accuracy": lambda d: len(d.gold) * (1 + len(d.methods) * len(d.seeds)),
    "alignment_table": lambda d: int(bool(d.gold)),
    "train_nmt": lambda d: len(d.small_nmt_models()),
    "translate_queries": lambda d: len(d.translations()),
    "translation_table": lambda d: int(bool(d.nmt) and any(d.has_en.values())),
    "evaluate_run": lambda d: d.table_cells(),
    "main_table": lambda d: 1,
    "map_ci_figure": lambda d: 1,
    "ot_heatmap": lambda d: len(d.langs),
    "learning_curve": lambda d: int(bool(d.sizes)),
    "all": lambda d: 1,
}


def expected_jobs(cfg: dict) -> dict[str, int]:
    dag = Dag(cfg)
    counts = {rule: formula(dag) for rule, formula in EXPECTED_JOBS.items()}
    return {rule: n for rule, n in counts.items() if n}


# ------------------------------------------------------------------ the offline dry run

# Runs Snakemake in this interpreter with every internet connection refused and logged, so
# that a download during DAG construction fails the test even if something catches the error.
OFFLINE_SNAKEMAKE = """
import os, socket
def _log(what):
    with open(os.environ["OPTICAL_TEST_NET_LOG"], "a") as log:
        log.write(f"{what}\\n")
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
def _refuse(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _log(address)
        raise OSError(f"network access refused in the offline dry run: {address}")
    return _connect(self, address, *args, **kwargs)
def _resolve(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        _log(host)
        raise socket.gaierror(f"name lookup refused in the offline dry run: {host}")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.getaddrinfo = _resolve
from snakemake.cli import main
main()
"""


def parse_job_stats(output: str) -> dict[str, int]:
    """The first "Job stats:" table of Snakemake's output as {rule: jobs}; checks its total."""
    lines = output.splitlines()
    assert "Job stats:" in lines, f"no job stats in the dry run's output:\n{output[-4000:]}"
    counts: dict[str, int] = {}
    for line in lines[lines.index("Job stats:") + 3 :]:
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        assert match, f"unexpected line in the job stats: {line!r}"
        if match.group(1) == "total":
            assert int(match.group(2)) == sum(counts.values())
            return counts
        counts[match.group(1)] = int(match.group(2))
    raise AssertionError(f"job stats without a total:\n{output[-4000:]}")


def offline_dry_run(
    cfg: dict, tmp_path: Path
) -> tuple[dict[str, int], subprocess.CompletedProcess]:
    """Dry-run the whole DAG of ``cfg`` without network; return the jobs per rule."""
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    net_log = tmp_path / "network.log"
    net_log.touch()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home / "hf"),
        "IR_DATASETS_HOME": str(home / "ir_datasets"),
        "OPTICAL_TEST_NET_LOG": str(net_log),
    }
    cmd = [
        sys.executable,
        "-c",
        OFFLINE_SNAKEMAKE,
        "--dry-run",
        "--quiet",
        "rules",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "1",
        # --configfile takes every argument after it: it comes last.
        "--configfile",
        str(config_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dry run failed:\n{output[-6000:]}"
    assert net_log.read_text() == "", f"the dry run tried the network:\n{net_log.read_text()}"
    written = [p for p in home.rglob("*") if p.is_file()]  # ir_datasets, Hugging Face caches
    assert not written, f"the dry run wrote into the download caches: {written[:5]}"
    assert not (workdir / "results").exists(), "the dry run created results/"
    return parse_job_stats(output), result


# ------------------------------------------------------------------ tests


def test_paper_config_validates(tmp_path):
    """The schema, the cross-references and the files (placeholders for the user's CLEF)."""
    cfg = load(PAPER)
    write_placeholders(cfg, tmp_path)
    validate_config(cfg, SCHEMA, tmp_path)  # relative paths resolve against tmp_path


def test_paper_config_shape():
    """Seven query languages against English: four low-resource, three higher-resource."""
    cfg = load(PAPER)
    assert list(cfg["languages"]) == ["sw", "so", "tl", "ps", "fi", "de", "fr"]
    assert cfg["collections"]["clef"]["source"] == "local"
    assert cfg["teacher"]["model"]["backbone"] == "bert-base-multilingual-cased"
    codes = cfg["nmt"]["systems"]["nllb"]["lang_codes"]
    assert set(codes) == {*cfg["languages"], "en"}, "NLLB needs a code for every language"
    assert all(spec.get("bitext") for spec in cfg["languages"].values())
    # Tagalog and Pashto search the same English Wikipedia: one collection, own qrels each.
    assert cfg["languages"]["tl"]["collection"] == cfg["languages"]["ps"]["collection"]
    clirmatrix = cfg["collections"][cfg["languages"]["tl"]["collection"]]
    assert clirmatrix["qrels"] == "per_language" and set(clirmatrix["queries"]) == {"tl", "ps"}


def test_paper_open_sections_are_accepted_by_their_readers():
    """The sections the schema leaves open, checked by the code that reads them (unknown
    keys are errors there), so that a typo fails here and not hours into a cluster run."""
    from optical_clir.data.bitext import CLEAN_DEFAULTS, KINDS, SAMPLE_DEFAULTS
    from optical_clir.data.mmarco import TripleSourceConfig
    from optical_clir.models.encoder import EncoderConfig
    from optical_clir.train import distill, teacher
    from optical_clir.train.loop import TrainingArguments
    from optical_clir.translate.queries import TRANSLATE_DEFAULTS

    cfg = load(PAPER)
    TripleSourceConfig.from_dict(cfg["mmarco"]["source"])
    EncoderConfig.from_dict(cfg["teacher"]["model"])
    for section, task_keys in (("teacher", teacher.TASK_KEYS), ("distill", distill.TASK_KEYS)):
        train = {k: v for k, v in cfg[section]["train"].items() if k not in task_keys}
        TrainingArguments.from_dict(train, output_dir="unused")
    for lang, spec in cfg["languages"].items():
        bitext = spec["bitext"]
        assert bitext["source"]["kind"] in KINDS
        assert set(bitext.get("clean", {})) <= set(CLEAN_DEFAULTS), lang
        assert set(bitext.get("sample", {})) <= set(SAMPLE_DEFAULTS), lang
    for name, system in cfg["nmt"]["systems"].items():
        assert set(system.get("translate", {})) <= set(TRANSLATE_DEFAULTS), name


def test_paper_ir_datasets_ids_are_known_and_point_the_right_way():
    """Every ir_datasets id is one the installed ir_datasets knows (matched against its
    registry without loading, which would download), and CLIRMatrix ids put the language's
    queries against English documents: clirmatrix/<docs>/bi139-*/<queries>/<split>."""
    import ir_datasets

    cfg = load(PAPER)
    registry = ir_datasets.registry
    ids = [cfg["mmarco"]["source"]["source"].removeprefix("irds:")]
    for name, coll in cfg["collections"].items():
        if coll.get("source") == "ir_datasets":
            ids.append(coll["dataset"])
        for lang, spec in coll["queries"].items():
            if isinstance(spec, dict):
                ids.append(spec["ir_datasets"])
                match = re.fullmatch(
                    r"clirmatrix/(\w+)/bi139-(?:base|full)/(\w+)/(\w+)", spec["ir_datasets"]
                )
                if match:
                    assert match.group(1) == "en", f"{name}: documents must be English"
                    assert match.group(2) == lang, f"{name}: queries must be in {lang}"
                    if coll.get("qrels") == "per_language":  # documents only from `dataset`
                        assert coll["dataset"] == f"clirmatrix/{match.group(1)}"
                    else:
                        assert coll["dataset"] == spec["ir_datasets"], "qrels from `dataset`"
    for dataset_id in ids:
        known = dataset_id in registry._registered or any(
            pattern.match(dataset_id) for pattern, _ in registry._patterns
        )
        assert known, f"ir_datasets {ir_datasets.__version__} does not know {dataset_id!r}"


@pytest.mark.parametrize("path", [DEMO, PAPER], ids=["demo", "paper"])
def test_shipped_configs_use_holm_and_report_change_against_bm25_nmt(path: Path) -> None:
    """README: Holm correction over the comparisons of a column in the shipped configs, and
    the percentage against ``evaluation.relative_to`` BM25 + NMT in the demo and the paper."""
    evaluation = load(path)["evaluation"]
    assert evaluation["correction"] == "holm"
    assert evaluation["relative_to"] == "bm25_nmt"
    assert "bm25_nmt" in evaluation["systems"]


def test_paper_dense_index_holds_at_most_46_kb_per_document() -> None:
    """README "Paper-scale run": at most 46 KB of fp16 token vectors per document, i.e. the
    teacher's doc_max_length tokens x its projection dim x 2 bytes (encode_documents keeps
    at most doc_max_length token vectors per document, in dense.dtype)."""
    cfg = load(PAPER)
    model = cfg["teacher"]["model"]
    itemsize = np.dtype(cfg["dense"]["dtype"]).itemsize
    assert itemsize == 2, "fp16"
    assert model["doc_max_length"] * model["dim"] * itemsize <= 46_080  # 180 x 128 x 2


TAG = re.compile(r"#\s*(paper|ours)\b.*:")


def test_every_paper_value_is_tagged():
    """Each line that sets a value says where it comes from: "# paper: ..." or "# ours: ..."."""
    untagged = []
    for number, line in enumerate(PAPER.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split(" #", 1)[0].strip()
        if not code or code.startswith("#"):
            continue
        sets_value = code.startswith("- ") or not code.endswith(":")
        if sets_value and not TAG.search(line):
            untagged.append(f"{number}: {line}")
    assert not untagged, "values without '# paper:' or '# ours:':\n" + "\n".join(untagged)


@pytest.mark.parametrize("name", ["paper", "demo"])
def test_dry_run_job_counts(name, tmp_path):
    """The whole DAG, offline, with the job counts the config implies (the demo checks the
    formulas on gold alignments and a trained NMT system, which the paper config lacks)."""
    cfg = load(PAPER if name == "paper" else DEMO)
    counts, _ = offline_dry_run(write_placeholders(cfg, tmp_path / "inputs"), tmp_path)
    if name == "paper":  # CLEF and one English CLIRMatrix for Tagalog and Pashto
        for rule in ("prepare_collection", "index_bm25", "encode_documents"):
            assert counts[rule] == 2, (rule, counts[rule])
        assert counts["index_dense_ann"] == 1 and counts["split_qrels"] == 2
    expected = expected_jobs(cfg)
    assert counts == expected, f"jobs per rule differ from EXPECTED_JOBS ({name}):\n" + "\n".join(
        f"  {rule}: dry run {counts.get(rule, 0)}, expected {expected.get(rule, 0)}"
        for rule in sorted(set(counts) | set(expected))
        if counts.get(rule, 0) != expected.get(rule, 0)
    )
