"""Ingest from and to a real S3-compatible server on loopback (SeaweedFS): same bytes as a local run.
The jobs run serially in this process, except the CLI's, which starts its own local Ray (its workers
find the credentials in the environment the driver had)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pfs
import pytest

from tests import s3server
from tests.helpers import DriverKilled, tree_digest
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.storage import Store, redact

CFG = dict(shard_size="400KB", val_fraction=0.25, seed=4)  # seed 4: 3 of the 8 episodes in val
SERIAL = JobConfig.from_flags(workers=0, **CFG)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = s3server.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    s3server.stop(server)


@pytest.fixture(scope="module")
def s3_raw(s3, synthetic_raw) -> str:
    """The synthetic raw dataset uploaded to s3://trajshard/raw."""
    store = Store(s3.uri("raw"))
    pfs.copy_files(str(synthetic_raw), store.root, destination_filesystem=store.fs)
    return s3.uri("raw")


@pytest.fixture(scope="module")
def local_out(synthetic_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    run_ingest(str(synthetic_raw), str(out), SERIAL, progress=False)
    return out


def download(s3_uri: str, dest: Path) -> Path:
    return Store(s3_uri).download_tree(dest)


def test_s3_to_s3_writes_the_same_bytes_as_a_local_run(s3, s3_raw, local_out, tmp_path):
    report = run_ingest(s3_raw, s3.uri("out1"), SERIAL, progress=False)
    assert report.episodes_written == 8 and "secret" not in report.out
    got = download(s3.uri("out1"), tmp_path / "got")
    assert tree_digest(got) == tree_digest(local_out)
    assert validate_output(got).ok


def test_cli_with_credentials_from_the_environment(s3, s3_raw, local_out, tmp_path):
    """The path AWS users take: keys and endpoint in the environment, plain s3:// URIs, local Ray."""
    env = {**os.environ, **s3.env}
    env.pop("RAY_ADDRESS", None)
    cli = Path(sys.executable).with_name("trajshard")
    cmd = [str(cli), "ingest", s3.uri("raw", credentials=False), s3.uri("out2", credentials=False)]
    cmd += ["--workers", "2", "--shard-size", CFG["shard_size"], "--val-fraction", "0.25", "--seed", "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quarantined 0 of 8" in done.stdout and "secret" not in done.stdout + done.stderr
    got = download(s3.uri("out2"), tmp_path / "got")
    assert tree_digest(got) == tree_digest(local_out)


def test_local_source_to_s3_and_refusals(s3, synthetic_raw, local_out, tmp_path):
    run_ingest(str(synthetic_raw), s3.uri("out3"), SERIAL, progress=False)
    assert tree_digest(download(s3.uri("out3"), tmp_path / "got")) == tree_digest(local_out)
    from trajshard.pipelines.ingest import IngestError

    with pytest.raises(IngestError, match="already holds a dataset") as err:
        run_ingest(str(synthetic_raw), s3.uri("out3"), SERIAL, progress=False)
    assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="only raw-layout"):
        run_ingest(
            s3.uri("raw"),
            str(tmp_path / "x"),
            JobConfig.from_flags(workers=0, format="lerobot"),
            progress=False,
        )
    assert redact(s3.uri("a")).startswith("s3://***@")


def test_a_staging_failure_leaves_nothing_half_staged(s3, s3_raw, monkeypatch):
    from trajshard.sources.remote import StagedRawSource

    src = StagedRawSource(s3_raw)
    real, calls = Store.get_file, []

    def flaky(self, rel, local_file):
        calls.append(rel)
        if len(calls) == 2:
            raise OSError("connection reset by peer")
        return real(self, rel, local_file)

    monkeypatch.setattr(Store, "get_file", flaky)
    with pytest.raises(OSError, match="cannot stage .*connection reset"):
        src.load("ep_001")
    ep = src.load("ep_001")  # the retry stages every file again
    assert ep.episode_id == "ep_001" and set(ep.cameras) == {"front", "wrist"}
    src.close()


def test_secrets_never_print():
    assert (
        redact("s3://AKIA:abc/def+g@bucket/p?endpoint_override=x") == "s3://***@bucket/p?endpoint_override=x"
    )
    assert redact("s3://bucket/raw") == "s3://bucket/raw"


@pytest.mark.parametrize("remote", [True, False])
def test_resume_after_a_commit_cut_short(
    s3, s3_raw, synthetic_raw, local_out, tmp_path, monkeypatch, caplog, remote
):
    """The driver dies in the middle of commit (after one shard was promoted): --resume undoes the
    promotion, keeps every finished group (checked against its sha256) and writes the same bytes."""
    from trajshard.pipelines import shards
    from trajshard.pipelines.ingest import IngestError

    out = s3.uri("cut") if remote else str(tmp_path / "cut")
    real, moved = shards.Store.move, []

    def dies_after_one(self, a, b):
        if moved:
            raise DriverKilled
        moved.append(b)
        return real(self, a, b)

    monkeypatch.setattr(shards.Store, "move", dies_after_one)
    with pytest.raises(DriverKilled):
        run_ingest(str(synthetic_raw), out, SERIAL, progress=False)
    monkeypatch.setattr(shards.Store, "move", real)
    store = Store(out)
    assert store.exists(moved[0]) and not store.exists("meta/info.json")
    with pytest.raises(IngestError, match="unfinished job"):
        run_ingest(str(synthetic_raw), out, SERIAL, progress=False)
    with caplog.at_level(logging.INFO, logger="trajshard.ingest"):
        run_ingest(str(synthetic_raw), out, SERIAL, progress=False, resume=True)
    assert "pass 2: shards: 8 of 8 episodes already done (resumed)" in caplog.text  # every group kept
    got = download(out, tmp_path / "got") if remote else Path(out)
    assert tree_digest(got) == tree_digest(local_out)
