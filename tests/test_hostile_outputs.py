"""Hostile outputs: crafted OUT directories that `validate` must fail (exit 1) and that every reader
(histogram, inspect, index, the torch loader) must refuse, naming the shard and the member, without
opening anything outside OUT (docs/robustness.md#limits-on-what-an-output-can-make-a-reader-do).

Each fault is made from a copy of a good output, with ``manifest.json``'s bytes and sha256 kept
current so that only the fault is left to find. Beside OUT lies ``outside.tar``, a copy of a real
shard (so a reader that follows an escaping name would find a valid shard there), and every file
opened while the readers run is recorded by an audit hook: none may lie outside OUT.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.io import MAX_MEMBER_BYTES, ShardError, check_member, iter_tar_samples, shard_path
from trajshard.pipelines.ingest import run_ingest
from trajshard.schemas.sample import load_npy
from trajshard.sources.synthetic import write_synthetic_dataset
from trajshard.tokenizers import from_json

REPO = Path(__file__).resolve().parents[1]
SHARD = "shards/train-000000.tar"
EPISODE = "ep_000"  # its samples are in SHARD

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # cannot be removed: it records only inside `watching()`


@contextmanager
def watching(root: Path, out: Path):
    """Record every file opened; at the end, none under ``root`` may lie outside ``out``."""
    global _opened
    _opened = []
    try:
        yield
    finally:
        opened, _opened = _opened, None
    root, out = os.path.realpath(root), os.path.realpath(out)
    outside = sorted(
        {
            real
            for p in opened
            if (real := os.path.realpath(p)).startswith(root + os.sep) and not real.startswith(out + os.sep)
        }
    )
    assert not outside, f"opened outside OUT: {outside}"


# ---- the good output and its hostile copies ------------------------------------------------------


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_outputs")
    write_synthetic_dataset(root / "raw", n_episodes=3, seconds=2.0, seed=0)
    run_ingest(str(root / "raw"), str(root / "out"), JobConfig.from_flags(workers=0), progress=False)
    return root / "out"


@pytest.fixture
def site(good, tmp_path) -> Path:
    """``site/out`` (a copy of the good output) beside ``site/outside.tar`` (a copy of its first shard)."""
    site = tmp_path / "site"
    shutil.copytree(good, site / "out")
    shutil.copyfile(good / SHARD, site / "outside.tar")
    return site


def members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_tar(path: Path, parts: list) -> None:
    """A tar of ``(name, data)`` members and raw header blocks (bytes), in order."""
    buf = io.BytesIO()
    for part in parts:
        if isinstance(part, bytes):
            buf.write(part)
            continue
        name, data = part
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o444
        buf.write(info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512))
    buf.write(b"\0" * 1024)
    path.unlink()
    path.write_bytes(buf.getvalue())


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def refresh_manifest(out: Path) -> None:
    """Keep every shard's bytes and sha256 current: the fault itself is what must be found."""

    def edit(manifest):
        for s in manifest["shards"]:
            path = out / s["name"]
            if path.is_file() and SHARD_RE.fullmatch(s["name"]):
                data = path.read_bytes()
                s.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    edit_json(out / "meta" / "manifest.json", edit)


SHARD_RE = re.compile(r"shards/[a-z]+-\d{6}\.tar")


def rename_shard(out: Path, new: str) -> None:
    """Name SHARD ``new`` in the manifest, info.json splits and episodes.parquet (bytes, sha256 and
    samples still those of the real shard, which outside.tar copies)."""

    def manifest(doc):
        doc["shards"][0]["name"] = new

    def info(doc):
        doc["splits"]["train"]["shards"][0] = new

    edit_json(out / "meta" / "manifest.json", manifest)
    edit_json(out / "meta" / "info.json", info)
    table = pq.read_table(out / "meta" / "episodes.parquet")
    rows = table.to_pylist()
    for r in rows:
        r["shards"] = [new if s == SHARD else s for s in r["shards"]]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / "meta" / "episodes.parquet")


def sparse_header(name: str, declared: int) -> bytes:
    """A GNU sparse ('S') member header declaring ``declared`` bytes and storing none."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 0
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)  # sparse map: one empty region
    buf[398:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    buf[483:495] = tarfile.itn(declared, 12, tarfile.GNU_FORMAT)  # the size it declares
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf[:512])
    return bytes(buf)


def raw_header(name: str, **fields) -> bytes:
    info = tarfile.TarInfo(name)
    for k, v in fields.items():
        setattr(info, k, v)
    return info.tobuf(tarfile.PAX_FORMAT)


class _Marker:
    """Unpickling it creates a file: the proof that something unpickled a member."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def first_sample_end(parts: list[tuple[str, bytes]]) -> int:
    key = parts[0][0].split(".")[0]
    return max(i for i, (n, _) in enumerate(parts) if n.split(".")[0] == key) + 1


# each fault: edit(site) -> the words every refusal names (validate's may differ: "validate" key)
def manifest_escape(site):
    rename_shard(site / "out", "shards/../../outside.tar")
    return {"all": ["shards/../../outside.tar"]}


def absolute_name(site):
    rename_shard(site / "out", str(site / "outside.tar"))
    return {"all": [str(site / "outside.tar")]}


def shard_link(site):
    (site / "out" / SHARD).unlink()
    (site / "out" / SHARD).symlink_to(site / "outside.tar")
    return {"all": ["train-000000.tar", "outside OUT/shards"]}


def sparse_member(site):
    path = site / "out" / SHARD
    parts = members(path)
    i = first_sample_end(parts)
    write_tar(path, [*parts[:i], sparse_header("ep_000_000001.big.npy", 10**10), *parts[i:]])
    refresh_manifest(site / "out")
    return {"all": ["train-000000.tar", "ep_000_000001.big.npy", "sparse"]}


def declared_pyd(site):
    out = site / "out"
    payload = pickle.dumps(_Marker(str(site / "unpickled")))
    for shard in sorted((out / "shards").glob("*.tar")):
        parts, with_pyd, key = members(shard), [], None
        for name, data in parts:
            k = name.split(".")[0]
            if key is not None and k != key:
                with_pyd.append((f"{key}.evil.pyd", payload))
            key = k
            with_pyd.append((name, data))
        write_tar(shard, [*with_pyd, (f"{key}.evil.pyd", payload)])
    refresh_manifest(out)
    edit_json(out / "meta" / "info.json", lambda d: d["features"].update({"evil.pyd": {"dtype": "pickle"}}))
    return {
        "all": ["train-000000.tar", "ep_000_000000.evil.pyd", "suffix .pyd"],
        "validate": ["features.evil.pyd"],
    }


def injected_keys(site):
    path = site / "out" / SHARD
    parts = members(path)
    i = first_sample_end(parts)
    fake = [(f"../{n}", d) for n, d in parts[i : 2 * i]]  # sample 1 again, under ../
    write_tar(path, [*parts[:i], *fake, *parts[i:]])
    refresh_manifest(site / "out")
    return {"all": ["train-000000.tar", "'../ep_000_000001.", "not a member name"]}


def link_member(site):
    path = site / "out" / SHARD
    parts = members(path)
    link = raw_header("ep_000_000000.link.npy", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    write_tar(path, [*parts[:3], link, *parts[3:]])
    refresh_manifest(site / "out")
    return {"all": ["train-000000.tar", "ep_000_000000.link.npy", "symbolic link"]}


def oversize_member(site):
    path = site / "out" / SHARD
    parts = members(path)
    i = first_sample_end(parts)
    big = raw_header("ep_000_000001.action.npy", size=100 * 2**20)  # its data is not even there
    write_tar(path, [*parts[:i], big])
    path.write_bytes(path.read_bytes()[:-1024])  # no end blocks: the declared data would follow
    refresh_manifest(site / "out")
    return {"all": ["train-000000.tar", "ep_000_000001.action.npy", f"more than the {MAX_MEMBER_BYTES}"]}


SHARD_FAULTS = {
    "manifest names shards/../../x.tar": manifest_escape,
    "manifest names an absolute path": absolute_name,
    "shard is a link out of OUT": shard_link,
    "GNU sparse member declaring 10 GB": sparse_member,
    "declared .pyd member": declared_pyd,
    "injected ../ keys": injected_keys,
    "symbolic link member": link_member,
    "member declaring 100 MB": oversize_member,
}


def run_readers(out: Path) -> dict[str, tuple[int, str]]:
    """Every reader over ``out``: (exit code, output) of the CLI commands, (1, message) of the torch
    loader when it raises LoaderError, (0, "") when it reads the split through."""
    runner = CliRunner()
    results = {
        "validate": runner.invoke(main, ["validate", str(out)]),
        "histogram": runner.invoke(main, ["histogram", str(out)]),
        "inspect": runner.invoke(main, ["inspect", str(out), "--episode", EPISODE]),
        "index": runner.invoke(main, ["index", str(out), "--no-energon"]),
    }
    for name, r in results.items():  # a crash is not a refusal
        assert r.exception is None or isinstance(r.exception, SystemExit), (name, r.output, r.exc_info)
    got = {name: (r.exit_code, r.output) for name, r in results.items()}
    got["loader"] = read_with_loader(out)
    return got


def read_with_loader(out: Path) -> tuple[int, str]:
    pytest.importorskip("torch")
    from trajshard.loader import LoaderError, make_loader, open_dataset

    try:
        ds = open_dataset(out, "train", shuffle_buffer=1, shuffle_shards=False)
        keys = [k for batch in make_loader(ds, num_workers=0) for k in [batch["key"]]]
    except LoaderError as exc:
        return 1, str(exc)
    return 0, " ".join(keys)


# ---- the tests -----------------------------------------------------------------------------------


def test_the_good_output_passes_every_reader_inside_out(site):
    out = site / "out"
    with watching(site, out):
        got = run_readers(out)
    assert {name: code for name, (code, _) in got.items()} == dict.fromkeys(got, 0), got
    shards = json.loads((out / "meta" / "manifest.json").read_text())["shards"]
    keys = [k for s in shards for k, _ in iter_tar_samples(out / s["name"])]
    assert got["loader"][1].split() == keys  # every sample once, in the stored order


@pytest.mark.parametrize("fault", list(SHARD_FAULTS))
def test_validate_fails_and_every_reader_refuses(fault, site):
    out = site / "out"
    words = SHARD_FAULTS[fault](site)
    with watching(site, out):
        got = run_readers(out)
    expected = {"validate": 1, "histogram": 1, "inspect": 1, "index": 2, "loader": 1}
    assert {name: code for name, (code, _) in got.items()} == expected, got
    for name, (_, text) in got.items():
        want = words.get(name, []) + words["all"]
        assert all(w in text for w in want), (name, want, text[-3000:])
    assert not (site / "unpickled").exists()


def test_escaping_names_never_read_the_outside_shard(site):
    """Without the confinement the outside copy would pass: it is a real shard with the right bytes."""
    manifest_escape(site)
    out = site / "out"
    report = json.loads(CliRunner().invoke(main, ["validate", str(out), "--json"]).output)
    assert not report["ok"]
    assert report["shards"] == 0  # stopped at the manifest: no shard was opened
    fields = {(p["where"], p["field"]) for p in report["problems"]}
    assert ("meta/manifest.json shards[0]", "name") in fields


def test_split_name_that_would_name_a_file_outside_meta(site):
    out = site / "out"

    def rename(doc):
        for s in doc["shards"]:
            s["split"] = "../../evil"

    edit_json(out / "meta" / "manifest.json", rename)
    with watching(site, out):
        got = run_readers(out)
    assert got["validate"][0] == 1 and "does not match [A-Za-z0-9_]+" in got["validate"][1]
    assert got["index"][0] == 2 and "../../evil" in got["index"][1]
    assert not list(site.rglob("wids-*.json"))


def test_info_splits_naming_an_outside_shard_is_a_problem(site):
    out = site / "out"
    edit_json(out / "meta" / "info.json", lambda d: d["splits"]["train"]["shards"].append("/etc/x.tar"))
    result = CliRunner().invoke(main, ["validate", str(out)])
    assert result.exit_code == 1
    assert "splits.train.shards" in result.output and "'/etc/x.tar' is not shards/<file>.tar" in result.output


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.update(token_range=[1, 2**40]), ["token_range", "1099511627776"]),
        (lambda t: t.update(bins=2**40, token_range=[1, 2**40]), ["bins", "65536"]),
    ],
    ids=["token_range 2^40", "bins 2^40"],
)
def test_huge_token_range_is_refused_before_allocating(site, edit, words):
    out = site / "out"
    edit_json(out / "meta" / "tokenizer.json", edit)
    with watching(site, out):
        v = CliRunner().invoke(main, ["validate", str(out)])
        h = CliRunner().invoke(main, ["histogram", str(out)])
    assert v.exit_code == 1 and all(w in v.output for w in ["meta/tokenizer.json", *words]), v.output
    assert h.exit_code == 1 and all(w in h.output for w in words), h.output
    assert h.exception is None or isinstance(h.exception, SystemExit)


def test_npy_header_declaring_2_40_values_is_refused_by_every_decoder(site):
    out = site / "out"
    path = out / SHARD
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i4", "fortran_order": False, "shape": (2**40,)})
    parts = [
        (n, header.getvalue() + b"\0" * 28 if n.endswith("000003.tokens.npy") else d)
        for n, d in members(path)
    ]
    write_tar(path, parts)
    refresh_manifest(out)
    with watching(site, out):
        got = run_readers(out)
    assert got["validate"][0] == 1
    assert (
        "ep_000_000003 [tokens.npy]" in got["validate"][1]
        and "header declares shape [1099511627776]" in (got["validate"][1])
    )
    assert got["histogram"][0] == 1 and "ep_000_000003" in got["histogram"][1]
    assert got["inspect"][0] == 1 and "1099511627776" in got["inspect"][1]
    assert got["loader"][0] == 1 and "ep_000_000003.tokens.npy" in got["loader"][1]
    assert got["index"][0] == 0  # headers and sha256 are right: the index describes the shards as they are


def test_member_checks_one_by_one():
    def info(name, **fields):
        i = tarfile.TarInfo(name)
        for k, v in fields.items():
            setattr(i, k, v)
        return i

    assert check_member("s.tar", info("ep_000001.front.jpg"), {"jpg"}) == ("ep_000001", "front.jpg")
    assert check_member("s.tar", info("ep_000001.cam.left.jpg")) == ("ep_000001", "cam.left.jpg")
    bad = {
        "../ep_000001.state.npy": "not a member name",
        "/abs/ep_000001.state.npy": "not a member name",
        "dir/ep_000001.state.npy": "not a member name",
        ".hidden.npy": "not a member name",
        "ep_000001": "not a member name",
        "ep_000001.x..npy": "not a member name",
        "ep_000001.state.pickle": "suffix .pickle",
        "ep_000001.state.npy.gz": "suffix .gz",
    }
    for name, words in bad.items():
        with pytest.raises(ShardError, match=re.escape(words)) as e:
            check_member("s.tar", info(name), {"npy", "jpg", "png", "json"})
        assert "s.tar: member" in str(e.value) and repr(name) in str(e.value)
    for fields, words in [
        ({"type": tarfile.DIRTYPE}, "a directory"),
        ({"type": tarfile.LNKTYPE, "linkname": "x"}, "a hard link"),
        ({"type": tarfile.CHRTYPE}, "a character device"),
        ({"type": tarfile.FIFOTYPE}, "a FIFO"),
        ({"size": MAX_MEMBER_BYTES + 1}, "more than the"),
    ]:
        with pytest.raises(ShardError, match=words):
            check_member("s.tar", info("ep_000001.state.npy", **fields))


def test_shard_path_confines_names(tmp_path):
    (tmp_path / "out" / "shards").mkdir(parents=True)
    assert shard_path(tmp_path / "out", "shards/train-000000.tar") == tmp_path / "out" / SHARD
    for name in [
        "shards/../x.tar",
        "/x.tar",
        "shards/.x.tar",
        "shards/a/b.tar",
        "x.tar",
        "shards/x",
        None,
        3,
    ]:
        with pytest.raises(ShardError, match="is not shards/<file>.tar"):
            shard_path(tmp_path / "out", name)
    # OUT/shards itself may be a link (a bigger disk); a shard linking out of it may not
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "train-000000.tar").write_bytes(b"")
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "shards").symlink_to(tmp_path / "big")
    assert shard_path(tmp_path / "o2", SHARD) == tmp_path / "o2" / SHARD
    (tmp_path / "out" / SHARD).symlink_to(tmp_path / "big" / "train-000000.tar")
    with pytest.raises(ShardError, match="outside OUT/shards"):
        shard_path(tmp_path / "out", SHARD)


def test_load_npy_refuses_before_allocating():
    good = io.BytesIO()
    np.save(good, np.arange(6, dtype=np.float32).reshape(2, 3), allow_pickle=False)
    assert load_npy(good.getvalue()).tolist() == [[0, 1, 2], [3, 4, 5]]
    obj = io.BytesIO()
    np.save(obj, np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_npy(obj.getvalue())
    with pytest.raises(ValueError, match="the member holds 20 bytes"):
        load_npy(good.getvalue()[:-4])


def test_from_json_bounds_bins_and_token_range(good):
    tok = json.loads((good / "meta" / "tokenizer.json").read_text())
    assert from_json(tok).token_range == tok["token_range"]
    with pytest.raises(ValueError, match="token_range"):
        from_json({**tok, "token_range": [0, 2**40]})
    with pytest.raises(ValueError, match="65536"):
        from_json({**tok, "bins": 2**40})


# ---- the plain-webdataset snippets of the README and shard-sample.md -----------------------------


def snippet(doc: str, after: str) -> str:
    text = (REPO / doc).read_text()
    start = text.index("```python\n", text.index(after)) + len("```python\n")
    return text[start : text.index("```", start)]


def test_readme_webdataset_snippet_does_not_unpickle(site, monkeypatch):
    pytest.importorskip("webdataset")
    import webdataset as wds

    declared_pyd(site)
    out = site / "out"
    shards = json.loads((out / "meta" / "manifest.json").read_text())["shards"]
    urls = [str(out / s["name"]) for s in shards]
    code = snippet("README.md", "**7. Train on it.**")
    assert 'open("out/meta/manifest.json")' in code and "out/meta/tokenizer.json" in code
    monkeypatch.chdir(site)  # the snippet reads out/ as written
    exec(compile(code, "README.md", "exec"), {})
    assert not (site / "unpickled").exists()

    code = snippet("docs/shard-sample.md", "## Reading with webdataset").replace(
        'out = "demo_out/dataset"', f"out = {str(out)!r}"
    )
    ns: dict = {}
    exec(compile(code, "shard-sample.md", "exec"), ns)
    samples = list(ns["ds"])
    assert len(samples) == sum(s["samples"] for s in shards)
    s = samples[0]
    assert s["front.jpg"].dtype == np.uint8 and s["front.jpg"].ndim == 3
    assert isinstance(s["meta.json"], dict) and s["state.npy"].dtype == np.float32
    assert isinstance(s["evil.pyd"], bytes)  # left as it was
    assert not (site / "unpickled").exists()

    # the control: webdataset's default handlers do unpickle it
    next(iter(wds.WebDataset(urls, shardshuffle=False).decode("rgb8")))
    assert (site / "unpickled").exists()
