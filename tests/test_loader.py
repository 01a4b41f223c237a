"""The torch loader on a real two-split, many-shard output: coverage, determinism, exact resume,
rank split, batch contents, mixtures. Order functions are also tested alone (no torch needed)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import split_keys
from trajshard.io import iter_tar_samples, read_json
from trajshard.loading.order import buffer_order, range_pieces, role_plan, shard_order, split_range

torch = pytest.importorskip("torch")
from trajshard.loader import LoaderError, TrajDataset, make_loader, open_dataset  # noqa: E402


def run(out, split="train", *, workers=2, seed=0, batch=4, buffer=16, stop=None, state=None, **kw):
    """Keys in loader order; with ``stop``, also the state after ``stop`` batches."""
    loader = make_loader(
        open_dataset(out, split, batch_size=batch, shuffle_buffer=buffer, seed=seed, **kw), workers
    )
    if state is not None:
        loader.load_state_dict(json.loads(json.dumps(state)))  # the state is plain JSON
    keys = []
    for i, b in enumerate(loader):
        keys += b["key"]
        if stop is not None and i + 1 == stop:
            return keys, loader.state_dict()
    return keys, None


def first_keys(loader, batches: int) -> list[str]:
    """Keys of the loader's first ``batches`` batches; the loader stops there, mid-epoch."""
    keys = []
    for i, b in enumerate(loader):
        keys += b["key"]
        if i + 1 == batches:
            break
    return keys


# ---- order, pure -----------------------------------------------------------------------------------


def test_buffer_order_is_a_bounded_seeded_permutation():
    for n, b in [(1000, 64), (50, 200), (7, 3)]:
        order = buffer_order(n, b, key=123)
        assert sorted(order.tolist()) == list(range(n))
        assert all(order[k] < k + b for k in range(n))  # a reader holds at most b samples
        assert order.tolist() == buffer_order(n, b, key=123).tolist()
        assert order.tolist() != buffer_order(n, b, key=124).tolist()
    assert buffer_order(10, 1, key=5).tolist() == list(range(10))


def test_shard_order_and_ranges_partition():
    assert sorted(shard_order(20, 0, 0)) == list(range(20))
    assert shard_order(20, 0, 0) != shard_order(20, 0, 1)  # epoch-dependent
    assert shard_order(20, 0, 3) == shard_order(20, 0, 3)
    ranges = [split_range(103, 6, i) for i in range(6)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 103
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert {hi - lo for lo, hi in ranges} <= {17, 18}
    counts = [5, 7, 3]
    pieces = range_pieces(counts, [2, 0, 1], 2, 12)
    assert [(p.shard, p.start, p.stop) for p in pieces] == [(2, 2, 3), (0, 0, 5), (1, 0, 4)]
    sizes = [role_plan(counts, seed=1, epoch=0, role=r, roles=4, shuffle_buffer=4).size for r in range(4)]
    assert sum(sizes) == 15


# ---- one split, DataLoader workers ------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_epoch_with_two_workers_sees_every_sample_of_the_split_once(two_split, split):
    expected = split_keys(two_split, split)
    assert len(read_json(two_split / "meta" / "manifest.json")["shards"]) > 20
    keys, _ = run(two_split, split)
    assert len(keys) == len(expected)
    assert sorted(keys) == sorted(expected)
    assert keys != expected  # shuffled, not the stored order


def test_order_repeats_with_a_seed_and_changes_with_seed_and_epoch(two_split):
    a, _ = run(two_split, seed=7)
    assert run(two_split, seed=7)[0] == a
    assert run(two_split, seed=8)[0] != a
    loader = make_loader(open_dataset(two_split, batch_size=4, shuffle_buffer=16, seed=7), 2)
    epochs = [[k for b in loader for k in b["key"]] for _ in range(2)]
    assert epochs[0] == a and epochs[1] != a and sorted(epochs[1]) == sorted(a)
    assert loader.epoch == 2


def test_order_depends_on_workers_but_not_on_how_the_loader_runs(two_split):
    in_process, _ = run(two_split, workers=0)
    assert run(two_split, workers=1)[0] == in_process  # one role either way
    assert sorted(run(two_split, workers=2)[0]) == sorted(in_process)
    plain, _ = run(two_split, workers=0, buffer=0, shuffle_shards=False)
    assert plain == split_keys(two_split, "train")  # no shuffle: the stored order


@pytest.mark.parametrize("stop", [1, 6, 20, 33])
def test_resume_from_mid_epoch_gives_exactly_the_rest(two_split, stop):
    full, _ = run(two_split, seed=3)
    head, state = run(two_split, seed=3, stop=stop)
    assert head == full[: len(head)]
    rest, _ = run(two_split, seed=3, state=state)
    assert head + rest == full


def test_resume_after_one_worker_ran_out(two_split):
    # 140 samples over 2 roles of 70, batch 8: each role yields 9 batches, the last of 6
    full, _ = run(two_split, batch=8)
    head, state = run(two_split, batch=8, stop=17)
    assert state["consumed"] == [70, 64] and state["next"] == 1
    rest, _ = run(two_split, batch=8, state=state)
    assert head + rest == full and len(rest) == 6


def test_resume_in_process_and_state_checks(two_split):
    ds = open_dataset(two_split, batch_size=5, shuffle_buffer=16, seed=1)
    full = [k for b in ds for k in b["key"]]
    ds2 = open_dataset(two_split, batch_size=5, shuffle_buffer=16, seed=1)
    it = iter(ds2)
    head = [k for _ in range(3) for k in next(it)["key"]]
    state = ds2.state_dict()
    ds3 = open_dataset(two_split, batch_size=5, shuffle_buffer=16, seed=1)
    ds3.load_state_dict(state)
    assert head + [k for b in ds3 for k in b["key"]] == full
    with pytest.raises(LoaderError, match="seed"):
        open_dataset(two_split, batch_size=5, shuffle_buffer=16, seed=2).load_state_dict(state)
    _, two_worker_state = run(two_split, stop=2)
    with pytest.raises(LoaderError, match="workers"):
        make_loader(open_dataset(two_split, batch_size=4, shuffle_buffer=16), 3).load_state_dict(
            two_worker_state
        )
    boundary = make_loader(open_dataset(two_split, batch_size=4, shuffle_buffer=16), 2).state_dict()
    three = make_loader(open_dataset(two_split, batch_size=4, shuffle_buffer=16), 3)
    three.load_state_dict(boundary)  # at an epoch boundary any worker count resumes
    assert three.state_dict()["num_workers"] == 3


def test_ranks_partition_the_split(two_split):
    per_rank = [run(two_split, rank=r, world_size=2)[0] for r in range(2)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(split_keys(two_split, "train"))
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1
    ds = open_dataset(two_split, batch_size=4, rank=1, world_size=2)
    assert ds.num_samples(2) == len(per_rank[1]) and len(make_loader(ds, 2)) == 18
    with pytest.raises(LoaderError, match="rank"):
        open_dataset(two_split, rank=2, world_size=2)


def test_rank_and_world_size_default_from_the_environment(two_split, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ds = open_dataset(two_split)
    assert (ds.rank, ds.world_size) == (1, 3)


def test_batches_hold_the_decoded_sample(two_split):
    info = read_json(two_split / "meta" / "info.json")
    raw = {k: m for name in info["splits"]["val"]["shards"] for k, m in iter_tar_samples(two_split / name)}
    batch = next(iter(make_loader(open_dataset(two_split, "val", batch_size=6, seed=2), 2)))
    assert set(batch["images"]) == {"front", "wrist"}
    front = batch["images"]["front"]
    assert front.dtype == torch.uint8 and tuple(front.shape) == (6, 3, 224, 224)
    assert batch["state"].dtype == torch.float32 and batch["tokens"].shape == (6, 7)
    assert batch["token_ids"].dtype == torch.int64
    assert "__role__" not in batch
    for i, key in enumerate(batch["key"]):
        m = raw[key]
        jpg = np.asarray(Image.open(io.BytesIO(m["front.jpg"])).convert("RGB"))
        assert np.array_equal(front[i].permute(1, 2, 0).numpy(), jpg)
        assert np.array_equal(batch["action"][i].numpy(), np.load(io.BytesIO(m["action.npy"])))
        assert np.array_equal(batch["token_ids"][i].numpy(), np.load(io.BytesIO(m["token_ids.npy"])))
        meta = json.loads(m["meta.json"])
        assert batch["instruction"][i] == meta["instruction"] and batch["step"][i].item() == meta["step"]
        assert batch["episode"][i] == meta["episode"]


def test_unbatched_samples_and_missing_split(two_split):
    s = next(iter(open_dataset(two_split, "val")))
    assert tuple(s["images"]["wrist"].shape) == (3, 224, 224) and isinstance(s["instruction"], str)
    with pytest.raises(LoaderError, match="split 'test' has no shards"):
        open_dataset(two_split, "test")


# ---- mixtures ---------------------------------------------------------------------------------------


def write_mixture(path: Path, out: Path, text: str) -> Path:
    path.write_text(text.replace("OUT", str(out)))
    return path


def test_mixture_draws_by_weight_deterministically_and_resumes(two_split, tmp_path):
    mix = write_mixture(
        tmp_path / "mix.toml",
        two_split,
        'samples_per_epoch = 400\n[[datasets]]\npath = "OUT"\nweight = 3\n'
        '[[datasets]]\npath = "OUT"\nsplit = "val"\nweight = 1\n',
    )
    train, val = set(split_keys(two_split, "train")), set(split_keys(two_split, "val"))

    def keys_and_sources(**kw):
        loader = make_loader(open_dataset(mix, batch_size=8, shuffle_buffer=16, **kw), 2)
        pairs = [(k, int(d)) for b in loader for k, d in zip(b["key"], b["dataset"], strict=True)]
        return pairs

    pairs = keys_and_sources(seed=0)
    assert len(pairs) == 400
    assert all((k in train) if d == 0 else (k in val) for k, d in pairs)
    share = sum(d == 0 for _, d in pairs) / len(pairs)
    assert 0.68 < share < 0.82  # weight 3:1
    assert len({k for k, d in pairs if d == 1}) == len(val)  # val (84) is cycled: every sample drawn
    assert keys_and_sources(seed=0) == pairs
    assert keys_and_sources(seed=1) != pairs
    loader = make_loader(open_dataset(mix, batch_size=8, shuffle_buffer=16), 2)
    head = first_keys(loader, 21)
    resumed = make_loader(open_dataset(mix, batch_size=8, shuffle_buffer=16), 2)
    resumed.load_state_dict(loader.state_dict())
    assert head + [k for b in resumed for k in b["key"]] == [k for k, _ in pairs]


def test_mixture_weighting_by_transitions_and_bad_files(two_split, tmp_path):
    mix = write_mixture(
        tmp_path / "mix.json",
        two_split,
        json.dumps(
            {
                "weighting": "transitions",
                "datasets": [{"path": "OUT"}, {"path": "OUT", "split": "val", "weight": 2}],
            }
        ),
    )
    ds = open_dataset(mix)
    assert ds.weights == pytest.approx((140 / 308, 168 / 308))
    assert ds.epoch_samples() == 224
    bad = write_mixture(tmp_path / "bad.toml", two_split, '[[datasets]]\npath = "OUT"\nweight = -1\n')
    with pytest.raises(LoaderError, match="weight must be a number > 0"):
        open_dataset(bad)
    bad.write_text('weighting = "episodes"\n[[datasets]]\npath = "x"\n')
    with pytest.raises(LoaderError, match="weighting must be one of"):
        open_dataset(bad)


def test_a_new_pass_after_break_continues_the_epoch(two_split):
    full, _ = run(two_split)
    loader = make_loader(open_dataset(two_split, batch_size=4, shuffle_buffer=16), 2)
    head = first_keys(loader, 10)
    assert head + [k for b in loader for k in b["key"]] == full and loader.epoch == 1


class PidDataset(TrajDataset):
    """A TrajDataset whose batches carry the pid of the process that made them."""

    def __iter__(self):
        for item in super().__iter__():
            item["pid"] = os.getpid()
            yield item


def keys_and_pids(loader, batches: int | None = None) -> tuple[list[str], set[int]]:
    """Keys and producing pids of a pass (of its first ``batches`` batches, then leaving it)."""
    keys, pids = [], set()
    for i, b in enumerate(loader):
        keys += b["key"]
        pids.add(b["pid"])
        if batches is not None and i + 1 == batches:
            break
    return keys, pids


def fresh_epoch(out, epoch: int) -> list[str]:
    loader = make_loader(open_dataset(out, batch_size=4, shuffle_buffer=16), 2)
    loader.set_epoch(epoch)
    return [k for b in loader for k in b["key"]]


def test_workers_persist_across_epochs_with_the_exact_order(two_split):
    ds = open_dataset(two_split, batch_size=4, shuffle_buffer=16)
    loader = make_loader(PidDataset(ds.sources, batch_size=4, shuffle_buffer=16), 2)
    full0, pids = keys_and_pids(loader)
    assert len(pids) == 2 and os.getpid() not in pids
    full1, pids1 = keys_and_pids(loader)
    assert pids1 == pids and full0 == fresh_epoch(two_split, 0) and full1 == fresh_epoch(two_split, 1)
    head, _ = keys_and_pids(loader, 7)  # epoch 2, left mid-way with batches in flight
    state = loader.state_dict()
    loader.set_epoch(0)  # a new epoch from its start, on the same workers
    assert keys_and_pids(loader, 5)[0] == full0[:20]
    loader.load_state_dict(state)  # back to epoch 2 after 7 batches
    rest, pids2 = keys_and_pids(loader)
    assert head + rest == fresh_epoch(two_split, 2) and pids2 == pids and loader.epoch == 3
    loader.close()  # a pass after close starts new workers, at the current position
    full3, pids3 = keys_and_pids(loader)
    assert full3 == fresh_epoch(two_split, 3) and not pids3 & pids
