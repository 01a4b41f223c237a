"""Tokenizer guards (tokenizers/guards.py) and per-dimension normalization: a tokenizer that erases
or clips a dimension is found at fit time, said by ingest with its fix, shown by stats, histogram and
the card, flagged by validate; ``normalization = auto`` keeps sparse commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_data

from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.stats import StreamStats
from trajshard.reports.validation import validate_output
from trajshard.tokenizers import fit, fitted_document, from_json
from trajshard.tokenizers.normalize import spec_problems


def fitted(values: np.ndarray, normalization: str | dict = "bounds_q99") -> dict:
    sketch = StreamStats.from_values(values)
    stats = sketch.to_json(tuple(f"d{i}" for i in range(values.shape[1])))
    tok = fit("uniform", stats, 256, normalization=normalization, sketch=sketch)
    return fitted_document(tok, sketch, stats)


def sparse_actions(n: int = 4000, seed: int = 0) -> np.ndarray:
    """dim 0 continuous; dim 1 zero but for 0.8% +-3.75 commands (q01 == q99 == 0); dim 2 zero but for
    1.5% +3.75 and 0.5% -3.75 commands (q01 == 0: the negative ones fall below the bounds, as lift's x
    commands do); dim 3 constant."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 4))
    x[:, 0] = rng.normal(size=n)
    x[rng.choice(n, n // 250, replace=False), 1] = 3.75
    x[rng.choice(n, n // 250, replace=False), 1] = -3.75
    picked = rng.choice(n, n // 50, replace=False)
    x[picked[: 3 * len(picked) // 4], 2] = 3.75
    x[picked[3 * len(picked) // 4 :], 2] = -3.75
    x[:, 3] = 0.5
    return x


def test_each_guard_kind_is_found_on_its_dimension():
    doc = fitted(sparse_actions())
    kinds = {g["dim"]: g["kind"] for g in doc["guards"]}
    assert kinds == {1: "degenerate", 2: "sparse", 3: "constant"}
    by_dim = {g["dim"]: g for g in doc["guards"]}
    assert by_dim[1]["severity"] == "warning" and 'dims = {1 = "min_max"}' in by_dim[1]["fix"]
    assert by_dim[3]["severity"] == "info"


def test_heavy_clipping_is_found_when_most_movement_lies_outside_the_bounds():
    rng = np.random.default_rng(1)
    x = np.zeros((5000, 1))
    x[:, 0] = rng.normal(scale=0.01, size=5000)
    x[rng.choice(5000, 75, replace=False), 0] = rng.choice([-5.0, 5.0], 75)  # 1.5% huge excursions
    assert [g["kind"] for g in fitted(x)["guards"]] == ["heavy_clipping"]
    assert fitted(rng.normal(size=(5000, 1)))["guards"] == []  # a plain continuous signal: no alarm


def test_auto_keeps_the_sparse_commands_within_half_a_bin():
    x = sparse_actions()
    doc = fitted(x, "auto")
    assert doc["normalization"]["modes"] == ["bounds_q99", "min_max", "min_max", "bounds_q99"]
    assert set(doc["normalization"]["auto"]) == {"0", "1", "2", "3"}
    assert [g["kind"] for g in doc["guards"]] == ["constant"]
    tok = from_json(doc)
    commands = x[np.abs(x[:, 1]) > 0][:5]
    err = np.abs(tok.decode(tok.encode(commands)).astype(np.float64) - commands)
    assert np.all(err[:, 1:3] <= tok.tolerance()[1:3] + 1e-6)


def test_per_dimension_normalization_by_the_job_config():
    x = sparse_actions()
    doc = fitted(x, {"default": "bounds_q99", "dims": {"1": "min_max"}})
    assert doc["normalization"]["modes"] == ["bounds_q99", "min_max", "bounds_q99", "bounds_q99"]
    assert doc["normalization"]["mode"] == "per_dim" and "auto" not in doc["normalization"]
    assert [g["dim"] for g in doc["guards"] if g["severity"] == "warning"] == [2]
    assert fitted(x)["normalization"]["mode"] == "bounds_q99" and "modes" not in fitted(x)["normalization"]
    assert spec_problems({"default": "auto", "dims": {"x": "min_max"}})
    assert spec_problems("q99")
    with pytest.raises(ValueError, match="normalization"):
        JobConfig.from_flags(normalization={"dims": {"1": "median"}})


def test_lift_warns_about_dims_0_and_1_and_auto_fixes_them(tmp_path):
    """The real robosuite lift demos: y commands are 99% zeros with +-3.75 (q01 == q99 == 0), x commands
    have q01 == 0 so every -3.75 lands in the zero bin."""
    lift = str(shared_data("robosuite_hdf5") / "lift.hdf5")
    result = CliRunner().invoke(
        main, ["ingest", lift, str(tmp_path / "plain"), "--workers", "0", "--no-images"]
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: action dim")]
    assert [line.split(":")[1].strip() for line in warned[:2]] == ["action dim 0", "action dim 1"]
    assert all("--normalization auto" in line for line in warned)
    report = validate_output(tmp_path / "plain")
    assert report.ok and {f.field for f in report.findings} >= {
        "guards: action dim 0",
        "guards: action dim 1",
    }
    strict = CliRunner().invoke(main, ["validate", str(tmp_path / "plain"), "--strict"])
    assert strict.exit_code == 1 and "FINDINGS" in strict.output

    run_ingest(
        lift,
        str(tmp_path / "auto"),
        JobConfig.from_flags(workers=0, normalization="auto", no_images=True),
        progress=False,
    )
    rt = json.loads((tmp_path / "auto" / "meta" / "roundtrip.json").read_text())
    tok = from_json(json.loads((tmp_path / "auto" / "meta" / "tokenizer.json").read_text()))
    for d in (0, 1):
        assert rt["dims"][d]["max_error"] <= tok.tolerance()[d] * (1 + 1e-6)
        assert rt["dims"][d]["clip_rate"] == 0
    assert not validate_output(tmp_path / "auto").findings
    card = (tmp_path / "plain" / "README.md").read_text()
    assert "## Tokenizer guards" in card and "action dim 1: degenerate" in card
    stats = CliRunner().invoke(main, ["stats", str(tmp_path / "auto")])
    assert "normalization per dimension (auto)" in stats.output
