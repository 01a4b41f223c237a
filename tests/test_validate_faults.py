"""Eight corrupted copies of a good output: validate exits 1 on each and names the fault and where."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import edit_members, npy, replace_member
from trajshard.cli import main
from trajshard.reports.validation import validate_output

SHARD = "shards/train-000000.tar"


def flip_jpeg_byte(data):
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    b[20:60] = bytes(40)  # and break the header tables
    return bytes(b)


def remove_sample(members):
    key = members[len(members) // 2][0].split(".")[0]
    return [(n, d) for n, d in members if n.split(".")[0] != key]


def duplicate_sample(members):
    key = members[len(members) // 2][0].split(".")[0]
    dup = [(n, d) for n, d in members if n.split(".")[0] == key]
    i = max(i for i, (n, _) in enumerate(members) if n.split(".")[0] == key)
    return members[: i + 1] + dup + members[i + 1 :]


def nan_action(data):
    a = np.load(io.BytesIO(data), allow_pickle=False).copy()
    a[0] = np.nan
    return npy(a)


def fault_shard(edit):
    def apply(out):
        edit_members(out / SHARD, edit)
        manifest = json.loads((out / "meta" / "manifest.json").read_text())
        # keep the manifest's checksum current so the fault itself is what validate must find
        data = (out / SHARD).read_bytes()
        manifest["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        (out / "meta" / "manifest.json").write_text(json.dumps(manifest))

    return apply


def wrong_checksum(out):
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (out / "meta" / "manifest.json").write_text(json.dumps(manifest))


def shard_missing(out):
    (out / SHARD).unlink()


def tokenizer_mismatch(out):
    tok = json.loads((out / "meta" / "tokenizer.json").read_text())
    tok["normalization"]["center"] = [c + 1.0 for c in tok["normalization"]["center"]]
    (out / "meta" / "tokenizer.json").write_text(json.dumps(tok))


FAULTS = {
    "flipped JPEG byte": (fault_shard(replace_member(".front.jpg", flip_jpeg_byte)), ["front.jpg", "decode"]),
    "sample removed": (fault_shard(remove_sample), ["step", "was due"]),
    "sample duplicated": (fault_shard(duplicate_sample), ["step", "was due"]),
    "token out of range": (
        fault_shard(replace_member(".tokens.npy", lambda d: npy(np.full(7, 300, np.int32)))),
        ["tokens.npy", "outside the range"],
    ),
    "NaN action": (fault_shard(replace_member(".action.npy", nan_action)), ["action.npy", "NaN"]),
    "wrong checksum": (wrong_checksum, ["sha256"]),
    "shard missing": (shard_missing, [SHARD, "missing"]),
    "tokenizer.json mismatch": (tokenizer_mismatch, ["tokens.npy", "tolerance"]),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_found_and_named(fault, ingested, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ingested, out)
    apply, words = FAULTS[fault]
    apply(out)
    result = CliRunner().invoke(main, ["validate", str(out)])
    assert result.exit_code == 1, result.output
    text = result.output
    assert all(w in text for w in words), text[:2000]
    assert "train-000000.tar" in text or fault == "tokenizer.json mismatch" and "shards/" in text


def test_good_copy_passes_and_sampling_still_sees_structure(ingested, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ingested, out)
    assert CliRunner().invoke(main, ["validate", str(out)]).exit_code == 0
    fault_shard(remove_sample)(out)
    report = validate_output(out, sample_rate=0.05)
    assert not report.ok and report.deep_checked < report.samples
