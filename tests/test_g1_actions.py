"""The uniform tokenizer round trip on the real Unitree G1 actions (35,965 steps x 26 dims)."""

from __future__ import annotations

import numpy as np

from tests.helpers import g1_actions
from trajshard.pipelines.stats import StreamStats, merge_all
from trajshard.tokenizers import decode, fit


def test_g1_round_trip_within_half_bin():
    episodes = g1_actions()
    actions = np.concatenate(episodes).astype(np.float32)
    assert actions.shape == (35_965, 26)
    merged = merge_all([StreamStats.from_values(e) for e in episodes])
    doc = merged.to_json()
    # exact quantiles over the whole dataset, not merged per-episode bounds
    np.testing.assert_allclose(doc["q01"], np.quantile(actions.astype(np.float64), 0.01, axis=0), rtol=1e-12)
    np.testing.assert_allclose(doc["q99"], np.quantile(actions.astype(np.float64), 0.99, axis=0), rtol=1e-12)

    tok_json = fit("uniform", doc, 256).to_json()
    tokens = fit("uniform", doc, 256).encode(actions)
    decoded = decode(tokens, tok_json)  # only tokenizer.json is needed
    low, high = np.array(tok_json["normalization"]["low"]), np.array(tok_json["normalization"]["high"])
    half_bin = (high - low) / 255 / 2
    inside = (actions >= low) & (actions <= high)
    err = np.abs(decoded - actions)
    assert inside.mean() > 0.97
    assert np.all(err[inside] <= np.broadcast_to(half_bin, err.shape)[inside] * (1 + 1e-5) + 1e-6)
