"""Mergeable statistics: merging equals computing over everything; the sketch keeps rank error small."""

from __future__ import annotations

import numpy as np

from trajshard.pipelines import stats as S
from trajshard.pipelines.stats import StreamStats, merge_all, stats_document


def test_merge_equals_whole():
    rng = np.random.default_rng(0)
    parts = [rng.normal(i, 1 + i, size=(50 + 7 * i, 4)).astype(np.float32) for i in range(6)]
    whole = np.concatenate(parts).astype(np.float64)
    m = merge_all([StreamStats.from_values(p) for p in parts])
    assert m.count == len(whole) and m.exact
    np.testing.assert_allclose(m.mean, whole.mean(0), rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(m.m2 / m.count), whole.std(0), rtol=1e-9)
    np.testing.assert_array_equal(m.min, whole.min(0))
    np.testing.assert_array_equal(m.max, whole.max(0))
    q = m.quantiles()
    np.testing.assert_allclose(q["q01"], np.quantile(whole, 0.01, axis=0))
    np.testing.assert_allclose(q["q99"], np.quantile(whole, 0.99, axis=0))


def test_sketch_rank_error_small(monkeypatch):
    monkeypatch.setattr(S, "SKETCH_K", 2048)
    rng = np.random.default_rng(1)
    parts = [rng.standard_t(3, size=(1000, 2)).astype(np.float32) for _ in range(60)]
    m = merge_all([StreamStats.from_values(p) for p in parts])
    assert not m.exact
    whole = np.sort(np.concatenate(parts), axis=0)
    for key, q in S.QUANTILES.items():
        for d in range(2):
            rank = np.searchsorted(whole[:, d], m.quantiles()[key][d]) / len(whole)
            assert abs(rank - q) < 0.005, (key, d, rank)


def test_document_hash_is_content_hash():
    a = StreamStats.from_values(np.arange(10, dtype=np.float32)[:, None]).to_json(("x",))
    d1, d2 = stats_document({"action": a}), stats_document({"action": dict(a)})
    assert d1["hash"] == d2["hash"] and d1["hash"].startswith("sha256:")
    a2 = dict(a, mean=[99.0])
    assert stats_document({"action": a2})["hash"] != d1["hash"]
