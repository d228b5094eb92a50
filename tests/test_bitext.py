"""The bitext stage: readers, cleaning, sampling, alignments kept parallel, OPUS and HF sources."""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from pathlib import Path

import pytest
from test_download import serve

from optical_clir.data.bitext import (
    DROP_REASONS,
    Pair,
    clean_bitext,
    opus_url,
    prepare_bitext,
    read_moses,
    read_opus_zip,
    read_source,
    read_tsv,
    sample_and_split,
)
from optical_clir.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo" / "bitext"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- readers


def test_tsv_line_without_two_fields_is_an_error_with_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "b.tsv", ["a b\tx y", "only one field", "c\td"])
    with pytest.raises(InputError) as err:
        list(read_tsv(path))
    assert err.value.line == 2 and err.value.path == str(path) and "found 1" in str(err.value)
    write(path, ["a\tb", "c\td", "x\ty\tz"])
    with pytest.raises(InputError, match="found 3") as err:
        list(read_tsv(path))
    assert err.value.line == 3


def test_moses_mismatched_line_counts_name_both_files_and_counts(tmp_path: Path) -> None:
    src = tmp_path / "c.sw.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write("moja\nmbili\ntatu\n")
    en = write(tmp_path / "c.en", ["one", "two"])
    with pytest.raises(InputError) as err:
        list(read_moses(src, en))
    message = str(err.value)
    assert str(src) in message and str(en) in message
    assert "has 3 lines" in message and "has 2" in message
    write(en, ["one", "two", "three"])
    assert list(read_moses(src, en)) == [
        Pair("moja", "one"),
        Pair("mbili", "two"),
        Pair("tatu", "three"),
    ]


def test_alignment_file_must_be_parallel_and_in_range(tmp_path: Path) -> None:
    tsv = write(tmp_path / "b.tsv", ["a b\tx y", "c\tz"])
    align = write(tmp_path / "b.align", ["0-0 1-1"])
    with pytest.raises(InputError, match=r"has 2 lines but .* has 1"):
        list(read_tsv(tsv, align))
    write(align, ["0-0 1-1", "0-3"])
    with pytest.raises(InputError, match="outside the sentence pair") as err:
        list(read_tsv(tsv, align))
    assert err.value.line == 2 and err.value.path == str(align)
    write(align, ["0-0 1-1", "zero-one"])
    with pytest.raises(InputError, match="not a Pharaoh"):
        list(read_tsv(tsv, align))


def test_nothing_left_after_cleaning_is_an_error(tmp_path: Path) -> None:
    tsv = write(tmp_path / "b.tsv", ["same\tsame", "\tx"])
    with pytest.raises(InputError, match="no sentence pairs left"):
        prepare_bitext({"kind": "local_tsv", "path": str(tsv)}, {}, {"dev": 1}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_unknown_source_kind_and_missing_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="kind"):
        read_source({"kind": "ftp"})
    with pytest.raises(ConfigError, match=r"bitext.source.path"):
        read_source({"kind": "local_tsv"})


# --------------------------------------------------------------------------------- cleaning


def test_each_drop_reason_and_the_stats() -> None:
    pairs = [
        ("habari  ya\tasubuhi", "good   morning"),  # kept (whitespace normalised)
        ("", "empty source"),  # empty
        ("   ", "whitespace only"),  # empty
        ("hello world", "hello world"),  # identical (untranslated copy)
        ("neno", "one two three four five"),  # ratio 5 > 3
        (" ".join(["w"] * 101), " ".join(["v"] * 101)),  # too_long
        ("habari ya asubuhi", "good morning"),  # duplicate of the first after normalising
        ("jinsi ya kuzuia malaria nyumbani", "how to prevent malaria at home"),  # eval_query
        ("asante sana", "thank you very much"),  # kept (ratio 2)
    ]
    kept, stats = clean_bitext(pairs, {}, eval_queries=["Prevent MALARIA?"])
    assert kept == [
        Pair("habari ya asubuhi", "good morning"),
        Pair("asante sana", "thank you very much"),
    ]
    assert stats["input"] == 9 and stats["kept"] == 2 and stats["dropped_total"] == 7
    assert stats["dropped"] == {
        "empty": 2,
        "identical": 1,
        "too_short": 0,
        "too_long": 1,
        "ratio": 1,
        "eval_query": 1,
        "duplicate": 1,
    }
    assert stats["reason_order"] == list(DROP_REASONS)


def test_min_tokens_and_first_reason_wins() -> None:
    pairs = [("a", "b c"), ("x y", "u v"), (" ".join(["t"] * 12), "s")]
    kept, stats = clean_bitext(pairs, {"min_tokens": 2, "max_tokens": 10})
    assert kept == [Pair("x y", "u v")]
    # the last pair is too short, too long and a ratio outlier: counted once, as too_short
    assert stats["dropped"]["too_short"] == 2 and stats["dropped"]["too_long"] == 0
    assert stats["dropped"]["ratio"] == 0


def test_ratio_threshold_is_configurable_and_switches_work() -> None:
    pairs = [("a", "b c d e"), ("same", "same"), ("a b", "c d"), ("a b", "c d")]
    kept, stats = clean_bitext(pairs, {"max_ratio": 4.0, "drop_identical": False, "dedup": False})
    assert len(kept) == 4 and stats["dropped_total"] == 0
    with pytest.raises(ConfigError, match=r"bitext.clean.max_ratoi"):
        clean_bitext(pairs, {"max_ratoi": 2})


def test_eval_query_match_is_normalised_and_token_level() -> None:
    pairs = [
        ("x", "The cat sat ."),
        ("y", "concatenate strings"),  # 'cat' only inside a word: kept
        ("Je , VYANDARUA vyenye dawa vinazuia malaria ?", "z"),  # query on the source side
    ]
    queries = ["cat", "je, vyandarua vyenye dawa vinazuia malaria"]
    kept, stats = clean_bitext(pairs, {"max_ratio": 100}, eval_queries=queries)
    assert [p.src for p in kept] == ["y"]
    assert stats["dropped"]["eval_query"] == 2 and stats["eval_queries"] == 2
    kept, _ = clean_bitext(pairs, {"max_ratio": 100, "drop_eval_queries": False}, queries)
    assert len(kept) == 3


def test_alignment_rides_along_through_cleaning() -> None:
    pairs = [("a b", "c d", "0-0 1-1"), ("", "e", "0-0"), ("f", "g", "0-0")]
    kept, _ = clean_bitext(pairs)
    assert kept == [Pair("a b", "c d", "0-0 1-1"), Pair("f", "g", "0-0")]


# --------------------------------------------------------------------------------- sampling


def _pairs(n: int) -> list[Pair]:
    return [Pair(f"s{i}", f"e{i}", f"{i}-0") for i in range(n)]


def test_sampling_is_deterministic_with_the_right_sizes() -> None:
    pairs = _pairs(100)
    train, dev = sample_and_split(pairs, 50, 10, seed=3)
    assert (train, dev) == sample_and_split(pairs, 50, 10, seed=3)
    assert len(train) == 40 and len(dev) == 10
    assert not set(train) & set(dev) and set(train) | set(dev) <= set(pairs)
    assert sample_and_split(pairs, 50, 10, seed=4) != (train, dev)
    train, dev = sample_and_split(pairs, None, 0.25, seed=3)
    assert len(train) == 75 and len(dev) == 25 and set(train) | set(dev) == set(pairs)


def test_sampling_more_than_available_warns_and_takes_all(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        train, dev = sample_and_split(_pairs(10), 1000, 2, seed=0)
    assert len(train) == 8 and len(dev) == 2
    assert "only 10 left" in caplog.text
    with pytest.raises(ConfigError, match=r"bitext.sample.dev"):
        sample_and_split(_pairs(10), 5, 5, seed=0)


# ------------------------------------------------------------------------------------ stage


def test_prepare_keeps_alignments_parallel_on_the_demo_pseudo_language(tmp_path: Path) -> None:
    tsv, align = DEMO / "pseudo-en.tsv", DEMO / "pseudo-en.align"
    original = {
        tuple(line.split("\t")): a
        for line, a in zip(
            tsv.read_text(encoding="utf-8").splitlines(),
            align.read_text(encoding="utf-8").splitlines(),
            strict=True,
        )
    }
    source = {"kind": "local_tsv", "path": str(tsv), "align": str(align)}
    stats = prepare_bitext(source, {"max_ratio": 1.2}, {"n": 600, "dev": 100, "seed": 7}, tmp_path)
    assert stats["clean"]["dropped"]["ratio"] > 0  # some pairs gone, so indices shifted
    for split, n in (("train", 500), ("dev", 100)):
        lines = (tmp_path / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        aligns = (tmp_path / f"{split}.align").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(aligns) == n
        for line, a in zip(lines, aligns, strict=True):
            assert original[tuple(line.split("\t"))] == a
    written = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(stats))
    assert written["read"] == 3085 and written["sample"]["train"] == 500
    assert written["outputs"] == ["train.tsv", "dev.tsv", "train.align", "dev.align"]


def test_prepare_is_deterministic_and_writes_tsv(tmp_path: Path) -> None:
    source = {"kind": "local_tsv", "path": str(DEMO / "sw-en.tsv")}
    queries = ["wakati bora wa kupanda mahindi kabla ya mvua"]
    a = prepare_bitext(source, None, {"n": 300, "dev": 30, "seed": 1}, tmp_path / "a", queries)
    prepare_bitext(source, None, {"n": 300, "dev": 30, "seed": 1}, tmp_path / "b", queries)
    for name in ("train.tsv", "dev.tsv", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not (tmp_path / "a" / "train.align").exists()
    assert a["source"] == {"kind": "local_tsv", "path": str(DEMO / "sw-en.tsv")}
    assert a["clean"]["eval_queries"] == 1
    for line in (tmp_path / "a" / "train.tsv").read_text(encoding="utf-8").splitlines():
        assert len(line.split("\t")) == 2


def _opus_zip(path: Path, corpus: str, l1: str, l2: str, sides: dict[str, list[str]]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for lang in (l1, l2):
            zf.writestr(f"{corpus}.{l1}-{l2}.{lang}", "".join(f"{s}\n" for s in sides[lang]))
        zf.writestr("README", "made for a test")
        zf.writestr(f"{corpus}.{l1}-{l2}.xml", "<ids/>")
    return path.read_bytes()


def test_opus_zip_downloaded_over_http_and_sides_mapped(tmp_path: Path) -> None:
    sw = [f"sentensi namba {i} hapa" for i in range(20)]
    en = [f"sentence number {i} here" for i in range(20)]
    body = _opus_zip(tmp_path / "src.zip", "Tiny", "en", "sw", {"sw": sw, "en": en})
    with serve({"/OPUS-Tiny/v1/moses/en-sw.txt.zip": body}) as srv:
        source = {
            "kind": "opus",
            "corpus": "Tiny",
            "version": "v1",
            "src_lang": "sw",
            "url": srv.url + "/OPUS-{corpus}/{version}/moses/{l1}-{l2}.txt.zip",
            "cache_dir": str(tmp_path / "cache"),
        }
        stats = prepare_bitext(source, {}, {"n": None, "dev": 5, "seed": 0}, tmp_path / "out")
        prepare_bitext(source, {}, {"n": None, "dev": 5, "seed": 0}, tmp_path / "out2")
    assert len(srv.requests) == 1  # the cached zip is reused
    rows = [
        line.split("\t")
        for split in ("train", "dev")
        for line in (tmp_path / "out" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(map(tuple, rows)) == sorted(zip(sw, en, strict=True))
    assert stats["source"]["url"].endswith("/OPUS-Tiny/v1/moses/en-sw.txt.zip")
    assert stats["read"] == 20 and stats["sample"] == {
        "requested": None,
        "available": 20,
        "sampled": 20,
        "train": 15,
        "dev": 5,
        "dev_requested": 5,
        "seed": 0,
    }


def test_opus_language_order_and_missing_member(tmp_path: Path) -> None:
    assert opus_url("CCMatrix", "v1", "sw") == (
        "https://object.pouta.csc.fi/OPUS-CCMatrix/v1/moses/en-sw.txt.zip"
    )
    assert opus_url("CCMatrix", "v1", "af").endswith("/moses/af-en.txt.zip")
    path = tmp_path / "af-en.zip"
    _opus_zip(path, "Tiny", "af", "en", {"af": ["goeie môre"], "en": ["good morning"]})
    assert list(read_opus_zip(path, "Tiny", "af")) == [Pair("goeie môre", "good morning")]
    assert list(read_opus_zip(path, "tiny", "af")) == [Pair("goeie môre", "good morning")]
    with pytest.raises(InputError, match=r"no single member 'Tiny.af-de.af'"):
        read_opus_zip(path, "Tiny", "af", "de")
    with pytest.raises(InputError, match=r"has 2 lines but .* has 1"):
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("Tiny.af-de.af", "a\nb\n")
            zf.writestr("Tiny.af-de.de", "c\n")
        list(read_opus_zip(path, "Tiny", "af", "de"))


def test_huggingface_dataset_from_local_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rows = [{"translation": {"sw": f"neno {i}", "en": f"word {i}"}, "id": i} for i in range(12)]
    data = tmp_path / "train.json"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    flat = tmp_path / "flat.json"
    flat.write_text(
        "".join(json.dumps({"src": f"neno {i}", "tgt": f"word {i}"}) + "\n" for i in range(3)),
        encoding="utf-8",
    )
    source = {"kind": "huggingface", "name": "json", "data_files": str(data), "src_lang": "sw"}
    stats = prepare_bitext(source, {}, {"n": 10, "dev": 2, "seed": 0}, tmp_path / "out")
    assert stats["read"] == 12 and stats["sample"]["train"] == 8
    first = (tmp_path / "out" / "train.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("neno ") and "\tword " in first
    pairs, _ = read_source(
        {
            "kind": "huggingface",
            "name": "json",
            "data_files": str(flat),
            "src_lang": "sw",
            "src_column": "src",
            "en_column": "tgt",
        }
    )
    assert list(pairs)[2] == Pair("neno 2", "word 2")
    pairs, _ = read_source(source | {"src_lang": "yo"})
    with pytest.raises(InputError, match="row has no 'yo'"):
        list(pairs)
