"""Configuration validation: one clear message naming the key or path, before any job runs."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from optical_clir.config import load_schema, validate_config
from optical_clir.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
MINI = yaml.safe_load((REPO / "tests/data/mini/config.yaml").read_text())


def check(cfg):
    validate_config(cfg, SCHEMA, REPO)


def test_shipped_configs_are_valid():
    check(MINI)
    for path in sorted((REPO / "config").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        # Files of the paper config are the user's to provide; only its schema is checked here.
        if path.name == "config.yaml":
            check(cfg)


@pytest.mark.parametrize(
    "mutate, key, problem",
    [
        (lambda c: c.update(colour="blue"), "colour", "unknown key"),
        (lambda c: c["bm25"].update(k_1=1.2), "bm25.k_1", "unknown key"),
        (lambda c: c["bm25"].update(depth="many"), "bm25.depth", "expected integer"),
        (lambda c: c["bm25"].update(b=1.5), "bm25.b", "maximum"),
        (
            lambda c: c["evaluation"].update(correction="fdr"),
            "evaluation.correction",
            "is not one of",
        ),
        (lambda c: c.pop("seed"), "(top level)", "'seed' is a required property"),
        (
            lambda c: c["languages"]["sw"].update(collection="clef"),
            "languages.sw.collection",
            "'clef' is not a collection",
        ),
        (
            lambda c: c["evaluation"].update(systems=["bm25_en", "bm25_magic"]),
            "evaluation.systems.1",
            "unknown system 'bm25_magic'",
        ),
        (
            lambda c: c["evaluation"].update(relative_to="teacher_typo"),
            "evaluation.relative_to",
            "not in evaluation.systems",
        ),
        (
            lambda c: c["collections"]["mini"].update(qrels="tests/data/mini/missing.txt"),
            "collections.mini.qrels",
            "file 'tests/data/mini/missing.txt' does not exist",
        ),
        (
            lambda c: c["collections"]["mini"]["queries"].update(
                en={"path": "tests/data/mini/queries/en.tsv", "format": "xml"}
            ),
            "collections.mini.queries.en.format",
            "is not one of ['trec', 'tsv']",
        ),
        (
            lambda c: c["collections"]["mini"]["queries"].update(
                en={"path": "tests/data/mini/topics.txt", "format": "trec"}
            ),
            "collections.mini.queries.en.path",
            "file 'tests/data/mini/topics.txt' does not exist",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"].update(clean={"max_ratoi": 2.0}),
            "languages.sw.bitext.clean.max_ratoi",
            "unknown key (allowed here: dedup, drop_eval_queries",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"].update(clean={"max_ratio": 0.5}),
            "languages.sw.bitext.clean.max_ratio",
            "less than the minimum of 1",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"].update(
                clean={"min_tokens": 5, "max_tokens": 3}
            ),
            "languages.sw.bitext.clean.min_tokens",
            "5 is above max_tokens 3",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"]["sample"].update(dev=1.5),
            "languages.sw.bitext.sample.dev",
            "neither a count nor a fraction below 1",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"]["sample"].update(n=16, dev=16),
            "languages.sw.bitext.sample.dev",
            "16 dev pairs leave no training pairs out of n=16",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"]["source"].update(path="data/nope.tsv"),
            "languages.sw.bitext.source.path",
            "file 'data/nope.tsv' does not exist",
        ),
        (
            lambda c: c["languages"]["pseudo"]["bitext"]["source"].update(align="x.align"),
            "languages.pseudo.bitext.source.align",
            "file 'x.align' does not exist",
        ),
        (
            lambda c: c["languages"]["sw"]["bitext"].update(source={"kind": "moses", "src": "a"}),
            "languages.sw.bitext.source",
            "a moses source needs 'en'",
        ),
        (
            lambda c: c["collections"]["mini"].update(qrels="per_language"),
            "collections.mini.qrels",
            "per_language needs source: ir_datasets",
        ),
        (
            lambda c: c["collections"]["mini"].update(source="ir_datasets", dataset="x/en"),
            "collections.mini.qrels",
            "takes its qrels from 'dataset', or per_language",
        ),
        (
            lambda c: c["collections"]["mini"].update(
                source="ir_datasets", dataset="x/en", qrels="per_language"
            ),
            "collections.mini.queries.en",
            "every language needs {ir_datasets: id}",
        ),
        (
            lambda c: c["collections"]["mini"].update(
                source="ir_datasets",
                dataset="x/en",
                qrels="per_language",
                queries={q: {"ir_datasets": f"x/en/{q}"} for q in ("en", "sw", "pseudo")},
            ),
            "collections.mini.queries.en",
            "English queries need topics shared with the other languages",
        ),
        (
            lambda c: c["evaluation"].update(measures=["AP", "ndcg@10"]),
            "evaluation.measures.1",
            "'ndcg@10' is not an ir_measures measure",
        ),
        (
            lambda c: c["evaluation"].update(measures=["AP", "MAP"]),
            "evaluation.measures.1",
            "'MAP' is the same measure as 'AP'",
        ),
        (
            lambda c: c["evaluation"].update(measures=["nDCG@10"]),
            "evaluation.table_measure",
            "'AP' is not in evaluation.measures",
        ),
        (
            lambda c: c["teacher"]["train"].update(temperature=0),
            "teacher.train.temperature",
            "less than or equal to the minimum of 0",
        ),
        (
            lambda c: c["distill"]["train"].update(dev_max_pairs=0),
            "distill.train.dev_max_pairs",
            "less than the minimum of 1",
        ),
    ],
)
def test_bad_config_names_the_key(mutate, key, problem):
    cfg = copy.deepcopy(MINI)
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        check(cfg)
    assert info.value.key == key
    assert problem in str(info.value)


def test_snakemake_reports_bad_config_before_any_job(tmp_path):
    cfg = copy.deepcopy(MINI)
    cfg["bm25"]["k_1"] = 1.2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "config key 'bm25.k_1': unknown key" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "mutate, key, problem",
    [
        (lambda c: c["distill"]["loss"].update(epsilon=0), "distill.loss.epsilon", "0"),
        (lambda c: c["distill"]["loss"].update(epsilon=-0.1), "distill.loss.epsilon", "-0.1"),
        (
            lambda c: c["distill"]["loss"].update(marginals="tfidf"),
            "distill.loss.marginals",
            "is not one of",
        ),
        (
            lambda c: c.update(ablation={"optical": {"epsilon": []}}),
            "ablation.optical.epsilon",
            "should be non-empty",
        ),
        (lambda c: c.update(ablation={"optical": {}}), "ablation.optical", "should be non-empty"),
        (
            lambda c: c.update(ablation={"optical": {"epsilon": [0.0]}}),
            "ablation.optical.epsilon (merged distill.loss).epsilon",
            "0.0",
        ),
        (lambda c: c.update(ablation={"optical": {"colour": [1]}}), "ablation.optical", "colour"),
        (
            lambda c: c["distill"].update(select={"optical": {"marginals": ["tfidf"]}}),
            "distill.select.optical.marginals (merged distill.loss).marginals",
            "is not one of",
        ),
        (lambda c: c["dense"].update(depth=50), "dense.depth", "same depth"),
        (
            lambda c: c["languages"].update({"../x": c["languages"]["sw"]}),
            "languages.../x",
            "part of file paths",
        ),
    ],
)
def test_bad_distillation_settings_name_the_key(mutate, key, problem):
    cfg = copy.deepcopy(MINI)
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        check(cfg)
    assert info.value.key == key and problem in str(info.value), str(info.value)


def test_mixed_depth_allows_different_bm25_and_dense_depths():
    """evaluation.mixed_depth: true lets dense.depth differ from bm25.depth (refused by
    default, see above); a table of BM25 systems only never needs it."""
    cfg = copy.deepcopy(MINI)
    cfg["dense"]["depth"] = 50
    cfg["evaluation"]["mixed_depth"] = True
    check(cfg)
    assert (cfg["bm25"]["depth"], cfg["dense"]["depth"]) == (100, 50)
    cfg["evaluation"]["mixed_depth"] = False
    with pytest.raises(ConfigError, match="mixed_depth: true"):
        check(cfg)
    bm25_only = [s for s in cfg["evaluation"]["systems"] if s.startswith("bm25_")]
    cfg["evaluation"].update(systems=bm25_only, baselines=[], relative_to="bm25_nmt")
    check(cfg)


def test_bitext_fraction_and_defaults_are_filled_from_the_schema():
    cfg = copy.deepcopy(MINI)
    cfg["languages"]["sw"]["bitext"]["sample"] = {"dev": 0.25}
    check(cfg)
    bitext = cfg["languages"]["sw"]["bitext"]
    assert bitext["sample"] == {"n": None, "dev": 0.25}  # seed: the workflow's
    assert bitext["clean"]["max_ratio"] == 3.0 and bitext["clean"]["dedup"] is True


def test_library_defaults_equal_the_schema_defaults():
    """The schema is where the workflow's defaults live; the code's copies (for library
    use) must not drift from them."""
    import inspect

    from optical_clir.data.bitext import CLEAN_DEFAULTS, SAMPLE_DEFAULTS
    from optical_clir.losses.optimal_transport import OTAlignmentLoss
    from optical_clir.translate.queries import TRANSLATE_DEFAULTS
    from optical_clir.translate.small_nmt import MODEL_DEFAULTS

    def defaults(schema):
        return {k: v["default"] for k, v in schema["properties"].items() if "default" in v}

    bitext = SCHEMA["properties"]["languages"]["additionalProperties"]["properties"]["bitext"]
    assert defaults(bitext["properties"]["clean"]) == CLEAN_DEFAULTS
    sample = defaults(bitext["properties"]["sample"])
    assert sample == {k: SAMPLE_DEFAULTS[k] for k in ("n", "dev")}
    assert defaults(SCHEMA["$defs"]["nmt_train"]) == MODEL_DEFAULTS
    nmt = SCHEMA["properties"]["nmt"]["properties"]["systems"]["additionalProperties"]
    translate = defaults(nmt["properties"]["translate"])
    assert translate == {k: TRANSLATE_DEFAULTS[k] for k in translate}
    loss = defaults(SCHEMA["$defs"]["ot_loss"])
    init = inspect.signature(OTAlignmentLoss).parameters
    assert {k: init[k].default for k in loss if k in init} == {
        k: v for k, v in loss.items() if k in init
    }
    assert set(loss) - set(init) <= {"special_tokens"}  # read by the distillation module


def test_git_commit_marks_uncommitted_changes_to_tracked_files(tmp_path, monkeypatch):
    """The tables' provenance: the short commit id of a clean checkout, ``+dirty`` once a
    tracked file changes (staged or not; an untracked file does not count), ``unknown``
    outside a checkout and in a repository without commits."""
    from optical_clir.config import git_commit

    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above

    def git(*args):
        identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)

    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_commit(repo) == "unknown"  # not a checkout
    git("init", "-q")
    assert git_commit(repo) == "unknown"  # no commit yet
    (repo / "config.yaml").write_text("seed: 1\n")
    git("add", "config.yaml")
    git("commit", "-q", "-m", "first")
    clean = git_commit(repo)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{12}", clean) and head.startswith(clean)
    (repo / "notes.txt").write_text("untracked\n")
    assert git_commit(repo) == clean
    (repo / "config.yaml").write_text("seed: 2\n")
    assert git_commit(repo) == f"{clean}+dirty"
    git("add", "config.yaml")
    assert git_commit(repo) == f"{clean}+dirty"
    git("commit", "-q", "-m", "second")
    assert not git_commit(repo).endswith("+dirty") and git_commit(repo) != clean


def test_duplicate_yaml_keys_are_refused(tmp_path):
    from optical_clir.config import check_duplicate_keys

    text = (REPO / "tests/data/mini/config.yaml").read_text()
    assert "bm25: {k1: 0.9, b: 0.4," in text
    path = tmp_path / "twice.yaml"
    path.write_text(text.replace("bm25: {k1: 0.9, b: 0.4,", "bm25: {k1: 0.9, b: 0.4, k1: 1.2,"))
    with pytest.raises(ConfigError, match="given twice in one mapping") as info:
        check_duplicate_keys([path])
    assert info.value.key == "bm25.k1" and str(path) in str(info.value)
    top = tmp_path / "top.yaml"
    top.write_text(text + "\nseed: 14\n")
    with pytest.raises(ConfigError, match=r"lines 5 and \d+") as info:
        check_duplicate_keys([top])
    assert info.value.key == "seed"
    check_duplicate_keys([REPO / "tests/data/mini/config.yaml", REPO / "config/config.yaml"])

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "config key 'bm25.k1': given twice" in result.stdout + result.stderr


def test_readme_quotes_the_validator_word_for_word() -> None:
    """The error messages README.md shows are the ones a user gets (the path aside)."""
    readme = (REPO / "README.md").read_text()
    cfg = copy.deepcopy(MINI)
    cfg["bm25"]["k_1"] = 1.2
    with pytest.raises(ConfigError) as unknown:
        check(cfg)
    assert str(unknown.value) in readme
    cfg = copy.deepcopy(MINI)
    cfg["collections"] = {"demo": cfg["collections"].pop("mini")}
    for lang in cfg["languages"].values():
        lang["collection"] = "demo"
    cfg["collections"]["demo"]["qrels"] = "data/demo/qrels.tsv"
    with pytest.raises(ConfigError) as missing:
        check(cfg)
    assert str(missing.value).replace(str(REPO), "/repo") in readme


def readme_choice(switch: str) -> str:
    """The "demo default" cell of the row of README's "Our choices where the paper is silent"
    table whose switch cell names ``switch`` first."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Our choices where the paper is silent", 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and re.match(rf"`{re.escape(switch)}[`:]", cells[2]):
            return cells[1]
    raise AssertionError(f"no row for {switch!r} in README's table of our choices")


def number(pattern: str, text: str) -> float:
    """The number that the first group of ``pattern`` finds in ``text`` ("5,000", "1e-4")."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1).replace(",", ""))


def test_readme_table_of_our_choices_states_the_demo_defaults() -> None:
    """The "demo default" cells of README's table of our choices are what config/config.yaml
    runs, the schema's defaults filled in where it omits a key (Sinkhorn, PSQ)."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    check(cfg)  # fills in the defaults
    loss, train = cfg["distill"]["loss"], cfg["distill"]["train"]

    assert cfg["teacher"]["model"]["scoring"] == "maxsim"
    assert "MaxSim" in readme_choice("teacher.model.scoring")
    assert loss["cost"] == "cosine" and readme_choice("distill.loss.cost") == "1 - cosine"
    assert loss["marginals"] == "idf"
    assert readme_choice("distill.loss.marginals").startswith("idf of each side")

    epsilon = readme_choice("distill.loss.epsilon")  # "0.05 of each pair's cost sd, ..."
    assert number(r"^([\d.]+) of each pair's cost sd", epsilon) == loss["epsilon"] == 0.05
    assert loss["epsilon_mode"] == "relative"
    assert "no annealing" in epsilon and loss["epsilon_start"] is None

    sinkhorn = readme_choice("distill.loss.max_iter")
    assert number(r"at most ([\d,]+) iterations", sinkhorn) == loss["max_iter"] == 5000
    assert number(r"row error below (\S+)", sinkhorn) == loss["tol"] == 1e-4
    assert readme_choice("distill.loss.detach_plan").startswith("no (P detached")
    assert loss["detach_plan"] is True

    rates = readme_choice("distill.train")  # "OPTICAL 1e-3, KD-MSE 5e-4 (...)"
    assert number(r"OPTICAL ([\d.e-]+),", rates) == train["learning_rate"] == 1e-3
    kd_mse = cfg["distill"]["method_overrides"]["kd_mse"]["train"]["learning_rate"]
    assert number(r"KD-MSE ([\d.e-]+) ", rates) == kd_mse == 5e-4

    psq, psq_cell = cfg["bm25"]["psq"], readme_choice("bm25.psq")
    assert number(r"(\d+) EM iterations", psq_cell) == psq["iterations"] == 10
    assert number(r"up to (\d+)% probability", psq_cell) / 100 == psq["threshold"] == 0.9
    assert number(r"at most (\d+)$", psq_cell) == psq["top_k"] == 5


def test_reading_the_workflow_loads_neither_torch_nor_pot() -> None:
    """Every Snakemake start (on a cluster: every job) runs what common.smk imports and the
    config validation; with torch and POT loaded that took 3 s more per start."""
    code = (
        "import sys, yaml; from pathlib import Path\n"
        "from optical_clir.config import load_schema, validate_config\n"
        "from optical_clir.data.artifacts import remote_artifacts\n"
        "from optical_clir.retrieval.backends import describe_backends\n"
        "from optical_clir.variants import student_job_params, variant_names\n"
        "cfg = yaml.safe_load(Path('config/config.yaml').read_text())\n"
        "validate_config(cfg, load_schema(Path('workflow/schemas/config.schema.yaml')),"
        " Path('.').resolve())\n"
        "cfg['dense']['backend'] = 'faiss_ivf'\n"
        "describe_backends(cfg['dense'], list(cfg['collections']))\n"
        "print(sorted(m for m in ('torch', 'ot', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
