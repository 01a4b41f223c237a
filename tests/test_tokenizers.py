"""Normalization modes, uniform and quantile tokenizers, vocabulary mapping, gripper, sketch accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import g1_actions, shared_data
from trajshard.pipelines import stats as S
from trajshard.pipelines.actions import binarize_gripper
from trajshard.pipelines.stats import StreamStats, merge_all
from trajshard.tokenizers import decode, fit
from trajshard.tokenizers.normalize import Normalizer
from trajshard.tokenizers.report import RoundTrip
from trajshard.tokenizers.vocab import VocabMap

STATS = {
    "min": [-4.0, 0.0, 2.0],
    "max": [4.0, 2.0, 2.0],
    "q01": [-2.0, 0.5, 2.0],
    "q99": [2.0, 1.5, 2.0],
    "mean": [0.0, 1.0, 2.0],
    "std": [1.0, 0.25, 0.0],
}


@pytest.mark.parametrize(
    ("mode", "x", "y"),
    [
        ("bounds_q99", [2.0, 1.0, 2.0], [1.0, 0.0, 0.0]),
        ("min_max", [0.0, 1.5, 9.0], [0.0, 0.5, 0.0]),
        ("mean_std", [1.5, 1.25, 2.0], [0.5, 1 / 3, 0.0]),
        ("none", [0.5, -3.0, 0.25], [0.5, -1.0, 0.25]),
    ],
)
def test_normalization_modes(mode, x, y):
    n = Normalizer.fit(mode, STATS)
    np.testing.assert_allclose(n.normalize(np.array(x)), y, atol=1e-12)
    back = Normalizer.from_json(json.loads(json.dumps(n.to_json())))
    np.testing.assert_allclose(back.normalize(np.array(x)), y, atol=1e-12)


def test_mask_leaves_a_dimension_alone_and_constant_dims_do_not_divide_by_zero():
    n = Normalizer.fit("bounds_q99", STATS, mask=[True, False, True])
    y = n.normalize(np.array([0.0, 0.7, 123.0]))
    assert y.tolist() == [0.0, 0.7, 0.0]
    assert np.all(np.isfinite(n.denormalize(y)))
    assert n.denormalize(y)[2] == 2.0


def test_uniform_bins_mode_and_tolerance():
    tok = fit("uniform", STATS, 64, mode="bins")
    assert tok.token_range == [0, 63]
    rng = np.random.default_rng(0)
    x = rng.uniform([-2, 0.5, 2], [2, 1.5, 2], size=(5000, 3))
    t = tok.encode(x)
    assert t.min() >= 0 and t.max() <= 63
    assert np.all(np.abs(tok.decode(t) - x) <= tok.tolerance() + 1e-6)
    with pytest.raises(ValueError, match="outside"):
        tok.decode(np.array([64, 0, 0]))


def test_uniform_openvla_on_g1_max_normalized_error():
    acts = np.concatenate(g1_actions())
    doc = merge_all([StreamStats.from_values(a) for a in g1_actions()]).to_json()
    tok = fit("uniform", doc, 256)
    y = tok.norm.normalize(acts)
    y_back = tok.norm.normalize(tok.decode(tok.encode(acts)))
    lo, hi = tok.bounds()
    inside = (acts >= lo) & (acts <= hi)
    assert np.abs(y_back - y)[inside].max() <= 1 / 255 + 1e-6


def test_quantile_tokenizer_is_equal_mass_and_decodes_inside_the_bin():
    episodes = g1_actions()
    acts = np.concatenate(episodes)
    merged = merge_all([StreamStats.from_values(a) for a in episodes])
    tok = fit("quantile", merged.to_json(), 16, sketch=merged)
    tokens = tok.encode(acts)
    assert tokens.min() >= 0 and tokens.max() <= 15
    for d in (0, 7, 13):  # continuous joints: every bin holds about 1/16 of the steps
        share = np.bincount(tokens[:, d], minlength=16) / len(acts)
        assert np.all(np.abs(share - 1 / 16) < 0.01), share
    assert np.all(np.abs(tok.decode(tokens) - acts) <= tok.tolerance() + 1e-6)
    doc = json.loads(json.dumps(tok.to_json()))
    np.testing.assert_array_equal(decode(tokens[:100], doc), tok.decode(tokens[:100]))


def test_sketch_rank_error_under_any_merge_order():
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(0, 1, size=(int(n), 1)).astype(np.float32) for n in rng.integers(500, 15000, 150)]
    whole = np.sort(np.concatenate(parts)[:, 0])
    assert len(whole) > 10 * S.SKETCH_K
    for order in (range(len(parts)), reversed(range(len(parts))), rng.permutation(len(parts))):
        m = merge_all([StreamStats.from_values(parts[i]) for i in order])
        assert not m.exact
        q = m.quantiles()
        for key in ("q01", "q99", "q50"):
            rank = np.searchsorted(whole, q[key][0], side="left") / len(whole)
            assert abs(rank - S.QUANTILES[key]) <= 0.001, (key, rank)


def test_vocab_mappings():
    openvla = VocabMap.build("openvla:32000", [1, 256])
    assert openvla(np.array([1, 256])).tolist() == [31999, 31744]
    assert VocabMap.build("offset:100", [0, 15])(np.array([0, 15])).tolist() == [100, 115]
    with pytest.raises(ValueError, match="openvla:V"):
        VocabMap.build("nope", [1, 256])


def test_vocab_file_refuses_control_and_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models

    vocab = {"<s>": 0, "\x07": 1, **{f"w{i}": i for i in range(2, 40)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<s>"))
    tok.add_special_tokens(["<s>"])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    VocabMap.build("offset:10", [0, 15]).check_against(str(path))  # ids 10..25: plain words
    with pytest.raises(ValueError, match="control character"):
        VocabMap.build("offset:1", [0, 15]).check_against(str(path))
    with pytest.raises(ValueError, match="special token"):
        VocabMap.build("offset:0", [0, 15]).check_against(str(path))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        VocabMap.build("openvla:60", [1, 30]).check_against(str(path))


def test_gripper_binarization_records_convention():
    a = np.array([[0.0, 0.1], [0.0, 0.9], [0.0, 0.5]], dtype=np.float32)
    out = binarize_gripper(a, {"dim": 1, "threshold": 0.5, "closed": 0.0, "open": 1.0})
    assert out[:, 1].tolist() == [1.0, 0.0, 1.0] and a[1, 1] == np.float32(0.9)
    out = binarize_gripper(a, {"dim": 1, "threshold": 0.5, "closed_when": "below"})
    assert out[:, 1].tolist() == [1.0, 0.0, 0.0]


def test_roundtrip_report():
    tok = fit("uniform", STATS, 256)
    x = np.array([[0.0, 1.0, 2.0], [5.0, 1.0, 2.0]])
    rt = RoundTrip.measure(x, tok).merge(RoundTrip.measure(x, tok))
    doc = rt.to_json(["a", "b", "c"])
    assert doc["count"] == 4 and doc["dims"][0]["clip_rate"] == 0.5
    assert doc["dims"][0]["max_error"] == pytest.approx(3.0, abs=0.01)  # 5.0 clipped to q99 = 2.0


def test_fast_on_one_second_g1_chunks():
    from trajshard.tokenizers.fast import FastDecodeError, FastTokenizer

    episodes = g1_actions()
    doc = merge_all([StreamStats.from_values(a) for a in episodes]).to_json()
    h = 30  # one second at 30 Hz
    chunks = np.concatenate([np.stack([a[i : i + h] for i in range(0, len(a) - h + 1, 7)]) for a in episodes])
    tok = fit("fast", doc, 1024, horizon=h, scale=10.0, chunks=chunks[::3])
    lo, hi = tok.bounds()
    lengths = []
    for c in chunks[::5]:
        ids = tok.encode(c)
        lengths.append(len(ids))
        out = tok.decode(ids)
        assert out.shape == (h, 26)
        assert np.all(np.abs(out - np.clip(c, lo, hi)) <= tok.tolerance() * (1 + 1e-6) + 1e-6)
    assert np.mean(lengths) < h * 26 / 4  # compresses well against naive per-value binning
    doc_json = json.loads(json.dumps(tok.to_json()))
    np.testing.assert_allclose(decode(tok.encode(chunks[0]), doc_json), tok.decode(tok.encode(chunks[0])))
    with pytest.raises(FastDecodeError, match="expected 30 x 26"):
        tok.decode(tok.encode(chunks[0])[:-1])
    assert isinstance(FastTokenizer.from_json(doc_json), FastTokenizer)


def test_uniform_on_bridge_actions_within_half_bin():
    from trajshard.sources import open_source

    src = open_source(shared_data("bridge_rlds"), "rlds", 5.0)
    episodes = [src.load(e).streams["action"].values for e in src.plan()[0]]
    acts = np.concatenate(episodes)
    assert acts.shape == (250, 7)
    merged = merge_all([StreamStats.from_values(a) for a in episodes])
    np.testing.assert_allclose(merged.to_json()["q99"], np.quantile(acts.astype(np.float64), 0.99, axis=0))
    tok = fit("uniform", merged.to_json(), 256)
    lo, hi = tok.bounds()
    inside = (acts >= lo) & (acts <= hi)
    err = np.abs(tok.decode(tok.encode(acts)) - acts)
    assert np.all(err[inside] <= np.broadcast_to(tok.tolerance(), err.shape)[inside] + 1e-6)
