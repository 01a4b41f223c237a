"""The uniform tokenizer against the OpenVLA formula, written out independently here."""

from __future__ import annotations

import numpy as np
import pytest

from trajshard.tokenizers import decode, fit
from trajshard.tokenizers.uniform import UniformTokenizer


def reference_encode(x, low, high, bins=256):
    """y = clip(2(x - q01)/(q99 - q01) - 1, -1, 1), 0 where q01 == q99; digitize on linspace(-1, 1, bins)."""
    x, low, high = (np.asarray(a, dtype=np.float64) for a in (x, low, high))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.clip(2 * (x - low) / (high - low) - 1, -1, 1)
    y = np.where(high == low, 0.0, y)
    return np.digitize(y, np.linspace(-1, 1, bins))


def reference_decode(tokens, low, high, bins=256):
    edges = np.linspace(-1, 1, bins)
    centers = (edges[:-1] + edges[1:]) / 2
    y = centers[np.clip(np.asarray(tokens) - 1, 0, bins - 2)]
    return 0.5 * (y + 1) * (np.asarray(high) - np.asarray(low)) + np.asarray(low)


LOW = np.array([-2.0, 0.0, 5.0])
HIGH = np.array([2.0, 1.0, 5.0])  # third dimension is constant


@pytest.fixture
def tok():
    return UniformTokenizer.fit({"q01": LOW, "q99": HIGH}, 256)


def test_endpoints_and_middle(tok):
    # x at q01 -> y = -1 -> token 1; at q99 -> y = +1 -> token 256; midpoint -> y = 0 -> token 128
    assert tok.encode(np.array([-2.0, 0.0, 5.0])).tolist() == [1, 1, 128]
    assert tok.encode(np.array([2.0, 1.0, 5.0])).tolist() == [256, 256, 128]
    assert tok.encode(np.array([0.0, 0.5, 5.0])).tolist() == [128, 128, 128]
    # token 256 decodes into the last interval, like OpenVLA
    np.testing.assert_allclose(
        tok.decode(np.array([256, 256, 128]))[:2], HIGH[:2] - (HIGH - LOW)[:2] / 255 / 2, rtol=1e-6
    )


def test_just_inside_and_outside_bounds(tok):
    eps = 1e-6
    inside = tok.encode(np.array([-2.0 + eps, 1.0 - eps, 5.0]))
    assert inside.tolist() == [1, 255, 128]
    outside = tok.encode(np.array([-2.0 - 1.0, 1.0 + 3.0, 5.0 + 7.0]))
    assert outside.tolist() == [1, 256, 128]  # clipped to the edge bins
    assert tok.encode(np.array([-1e9, 1e9, -1e9])).tolist() == [1, 256, 128]


def test_constant_dimension_is_zero_and_decodes_to_its_value(tok):
    tokens = tok.encode(np.array([[0, 0, 5.0], [0, 0, 4.0], [0, 0, 100.0]]))
    assert (tokens[:, 2] == 128).all()
    assert np.allclose(tok.decode(tokens)[:, 2], 5.0)
    assert np.all(np.isfinite(tok.decode(tokens)))


def test_random_values_match_reference(tok):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=(10_000, 3))
    tokens = tok.encode(x)
    assert np.array_equal(tokens, reference_encode(x, LOW, HIGH))
    assert np.allclose(tok.decode(tokens), reference_decode(tokens, LOW, HIGH), atol=1e-5)
    assert tokens.min() >= 1 and tokens.max() <= 256


def test_round_trip_within_half_bin_inside_bounds(tok):
    rng = np.random.default_rng(1)
    x = rng.uniform(LOW, HIGH, size=(10_000, 3))
    err = np.abs(tok.decode(tok.encode(x)) - x)
    assert np.all(err[:, :2] <= tok.bin_width()[:2] / 2 + 1e-6)


def test_json_round_trip_and_decode_from_json_only(tok):
    doc = tok.to_json()
    assert doc["type"] == "uniform" and doc["bins"] == 256 and "digitize" in doc["formula"]
    assert doc["normalization"]["mode"] == "bounds_q99" and "q01" in doc["normalization"]["formula"]
    tokens = tok.encode(np.array([[0.3, 0.7, 5.0]]))
    assert np.array_equal(decode(tokens, doc), tok.decode(tokens))


def test_fit_from_stats_and_shape_errors():
    t = fit("uniform", {"q01": [0.0, 1.0], "q99": [1.0, 3.0]}, 256)
    with pytest.raises(ValueError, match="shape"):
        t.encode(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="unknown tokenizer"):
        fit("nope", {"q01": [0.0], "q99": [1.0]}, 256)
