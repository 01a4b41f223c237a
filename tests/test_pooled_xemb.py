"""Pooling datasets' action statistics into one tokenizer (tokenizers/pooled.py): what is exact, what is
approximated, and the bracket the approximation keeps."""

from __future__ import annotations

import numpy as np
import pytest

from trajshard.pipelines.stats import StreamStats
from trajshard.tokenizers import fit
from trajshard.tokenizers.pooled import mixture_quantile, narrowed, pool_action_stats, pooled_tokenizer


def stats_of(x: np.ndarray) -> dict:
    return StreamStats.from_values(x).to_json()


@pytest.fixture(scope="module")
def three():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(4000, 3))
    b = np.column_stack([rng.uniform(2, 6, 3000), rng.exponential(1.0, 3000)])  # 2-D: narrower
    c = rng.normal(5.0, 0.1, size=(1000, 4))  # 4-D: wider
    c[:, 0] = np.where(rng.uniform(size=1000) < 0.5, 0.0, 1.0)  # a binary gripper
    return [a, b, c]


def test_one_dataset_pools_to_itself(three):
    st = stats_of(three[0])
    pooled = pool_action_stats([st], [1.0])
    for k in ("min", "max", "q01", "q10", "q50", "q90", "q99"):
        assert pooled[k] == st[k]
    assert pooled["mean"] == pytest.approx(st["mean"]) and pooled["std"] == pytest.approx(st["std"])
    own = fit("uniform", st, 256)
    tok = pooled_tokenizer([own.to_json()], [st], [1.0])
    x = three[0][:50]
    assert (tok.encode(x) == own.encode(x)).all()


def test_min_max_mean_std_are_exact_and_quantiles_stay_in_the_bracket(three):
    weights = [0.5, 0.3, 0.2]
    streams = [stats_of(x) for x in three]
    pooled = pool_action_stats(streams, weights)
    assert len(pooled["mean"]) == 4 and pooled["quantile_method"].startswith("pooled")
    for j in range(4):
        have = [i for i, x in enumerate(three) if x.shape[1] > j]
        w = np.array([weights[i] for i in have]) / sum(weights[i] for i in have)
        # the weighted mixture, drawn exactly: each dataset's values with its weight per value
        values = np.concatenate([three[i][:, j] for i in have])
        vw = np.concatenate([np.full(len(three[i]), w[k] / len(three[i])) for k, i in enumerate(have)])
        assert pooled["min"][j] == pytest.approx(values.min())
        assert pooled["max"][j] == pytest.approx(values.max())
        mean = float((values * vw).sum())
        assert pooled["mean"][j] == pytest.approx(mean, abs=1e-9)
        assert pooled["std"][j] == pytest.approx(np.sqrt(((values - mean) ** 2 * vw).sum()), rel=1e-9)
        order = np.argsort(values)
        cum = np.cumsum(vw[order])
        for k, p in (("q01", 0.01), ("q10", 0.1), ("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
            own = [streams[i][k][j] for i in have]
            assert min(own) - 1e-12 <= pooled[k][j] <= max(own) + 1e-12  # the bracket the truth is in too
            if len(have) == 1:
                assert pooled[k][j] == own[0]
                continue
            truth = values[order][np.searchsorted(cum, p)]  # the inverse CDF (numpy interpolates: slack)
            slack = 0.05 * values.std()
            assert min(own) - slack <= truth <= max(own) + slack


def test_the_mixture_quantile_inverts_the_pooled_cdf():
    # two uniform distributions side by side, equal weights: the pooled median is where they meet
    lo = (np.array([0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0]), np.array([0, 0.01, 0.1, 0.5, 0.9, 0.99, 1]))
    hi = (lo[0] + 1.0, lo[1])
    assert mixture_quantile([lo, hi], [0.5, 0.5], 0.5) == pytest.approx(1.0)
    assert mixture_quantile([lo, hi], [0.5, 0.5], 0.25) == pytest.approx(0.5)
    assert 1.9 < mixture_quantile([lo, hi], [0.5, 0.5], 0.99) < 1.99  # between hi's q90 and q99
    # a point mass (a constant dimension): the quantile is the point
    mass = (np.full(7, 3.0), lo[1])
    assert mixture_quantile([mass], [1.0], 0.3) == 3.0
    assert mixture_quantile([lo, mass], [0.5, 0.5], 0.75) == 3.0


def test_pooled_tokenizer_needs_one_token_space(three):
    streams = [stats_of(x) for x in three]
    toks = [fit("uniform", s, 256).to_json() for s in streams]
    tok = pooled_tokenizer(toks, streams, [1, 1, 1])
    assert tok.dims == 4 and tok.bins == 256
    two = narrowed(tok, 2)
    x = three[1][:20]
    assert (two.encode(x) == tok.encode(np.column_stack([x, np.zeros((20, 2))]))[:, :2]).all()
    decoded = two.decode(two.encode(x))
    low, high = two.bounds()
    assert (np.abs(decoded - np.clip(x, low, high)) <= two.tolerance() + 1e-9).all()
    with pytest.raises(ValueError, match="same bins and mode"):
        pooled_tokenizer([toks[0], fit("uniform", streams[1], 128).to_json()], streams[:2], [1, 1])
    with pytest.raises(ValueError, match="one normalization mode"):
        other = fit("uniform", streams[1], 256, normalization="min_max").to_json()
        pooled_tokenizer([toks[0], other], streams[:2], [1, 1])
    with pytest.raises(ValueError, match="normalized in some datasets"):
        masked = fit("uniform", streams[1], 256, mask=[False, True]).to_json()
        pooled_tokenizer([toks[0], masked], streams[:2], [1, 1])


def test_normal_datasets_pool_close_to_the_truth():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 1.0, size=(20000, 1)), rng.normal(1.5, 0.5, size=(20000, 1))
    pooled = pool_action_stats([stats_of(a), stats_of(b)], [0.7, 0.3])
    values = np.concatenate([a[:, 0], b[:, 0]])
    vw = np.concatenate([np.full(20000, 0.7 / 20000), np.full(20000, 0.3 / 20000)])
    order = np.argsort(values)
    cum = np.cumsum(vw[order])
    for k, p in (("q01", 0.01), ("q10", 0.1), ("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
        truth = values[order][np.searchsorted(cum, p)]
        assert pooled[k][0] == pytest.approx(truth, abs=0.03)  # a probit-linear CDF fits normal data
