"""Training loader: a torch ``IterableDataset`` over trajshard shards (see docs/loader.md).

::

    from trajshard.loader import open_dataset, make_loader

    ds = open_dataset("OUT", split="train", batch_size=32, shuffle_buffer=1000, seed=0)
    loader = make_loader(ds, num_workers=2)
    for epoch in range(3):
        for batch in loader:          # batch["images"]["front"]: uint8 [32, 3, 224, 224], ...
            ...
        # mid-epoch: state = loader.state_dict(); later loader.load_state_dict(state)

The order of an epoch is a pure function of ``(seed, epoch, rank, world_size, num_workers,
shuffle_buffer)`` and the manifest (``trajshard.loading.order``). A state dict records the samples each
worker role has handed out, so resuming skips exactly those and gives the rest of the epoch, in the same
order. This is the only trajshard module that imports torch (the ``trajshard[torch]`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trajshard.loading.draws import ReadOptions, mixture_draws, read_split
from trajshard.loading.mixture import Mixture, is_mixture_file, read_mixture
from trajshard.loading.order import split_range
from trajshard.loading.source import LoaderError, SplitSource, open_split
from trajshard.loading.standard import Standardizer

STATE_VERSION = 1
_ROLE, _COUNT = "__role__", "__count__"
_META_SCALARS = {
    "step": torch.int64,
    "is_first": torch.bool,
    "is_last": torch.bool,
    "time": torch.float64,
    "action_dim": torch.int64,  # in a mixture layout (loading/standard.py): the sample's own widths
    "state_dim": torch.int64,
    "fps": torch.float64,
}
_META_STRINGS = ("episode", "embodiment", "dataset_name")
_RAGGED = ("state", "action", "action_chunk", "tokens", "token_ids")  # lists in a ragged mixture layout


def default_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` from an initialized ``torch.distributed``, else env RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class TrajDataset(IterableDataset):
    """Samples (or batches) of one split, or of a mixture; build it with :func:`open_dataset`.

    Iterating it yields one epoch; the epoch then advances by one. With ``batch_size`` it yields
    collated batches (see :func:`collate`), else single samples. Each item carries ``__role__`` and
    ``__count__`` for resume bookkeeping (:class:`TrajLoader` removes them).
    """

    def __init__(
        self,
        sources: tuple[SplitSource, ...],
        *,
        weights: tuple[float, ...] | None = None,
        samples_per_epoch: int | None = None,
        batch_size: int | None = None,
        shuffle_buffer: int = 1000,
        shuffle_shards: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        decode_images: bool = True,
        standard: Standardizer | None = None,
    ) -> None:
        super().__init__()
        if rank is None or world_size is None:
            r, w = default_rank_world()
            rank = r if rank is None else rank
            world_size = w if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise LoaderError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size is not None and batch_size < 1:
            raise LoaderError(f"batch_size must be >= 1, got {batch_size}")
        if len(sources) > 1 and standard is None:
            _check_compatible(sources)
        self.sources = sources
        self.weights = weights
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.shuffle_buffer = int(shuffle_buffer)
        self.shuffle_shards = shuffle_shards
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.decode_images = decode_images
        self.standard = standard  # a mixture's [target] layout, applied to every sample drawn
        self._state = self._fresh_state(epoch=0, num_workers=1)

    # ---- the order -------------------------------------------------------------------------------

    @property
    def is_mixture(self) -> bool:
        return self.weights is not None

    def epoch_samples(self) -> int:
        """Samples in one epoch, all ranks together."""
        return self.samples_per_epoch if self.is_mixture else self.sources[0].samples

    def role_sizes(self, num_workers: int) -> list[int]:
        """Samples each of this rank's ``num_workers`` roles yields per epoch."""
        nw, roles = max(1, num_workers), self.world_size * max(1, num_workers)
        total = self.epoch_samples()
        return [int(np.diff(split_range(total, roles, self.rank * nw + w))[0]) for w in range(nw)]

    def num_samples(self, num_workers: int = 0) -> int:
        """Samples this rank sees per epoch (the same for any ``num_workers``)."""
        return sum(self.role_sizes(num_workers))

    def num_batches(self, num_workers: int = 0) -> int:
        """Items (batches, or samples without ``batch_size``) this rank yields per epoch."""
        bs = self.batch_size or 1
        return sum(-(-n // bs) for n in self.role_sizes(num_workers))

    def _role_samples(self, role: int, roles: int, epoch: int, skip: int) -> Iterator[dict]:
        if not self.is_mixture:
            yield from self._read(self.sources[0], self.seed, epoch, role, roles, skip)
            return
        yield from self._mixture_samples(role, roles, epoch, skip)

    def _read(
        self, src: SplitSource, seed: int, epoch: int, role: int, roles: int, skip: int
    ) -> Iterator[dict]:
        """One role's samples of one source in one epoch, the first ``skip`` left out unread."""
        return read_split(src, self.read_options, seed=seed, epoch=epoch, role=role, roles=roles, skip=skip)

    @property
    def read_options(self) -> ReadOptions:
        return ReadOptions(self.shuffle_buffer, self.shuffle_shards, self.decode_images)

    def _mixture_samples(self, role: int, roles: int, epoch: int, skip: int) -> Iterator[dict]:
        draws = mixture_draws(
            self.sources,
            self.weights,
            self.samples_per_epoch,
            self.read_options,
            seed=self.seed,
            epoch=epoch,
            role=role,
            roles=roles,
            skip=skip,
            cameras=None if self.standard is None else self.standard.cameras_used(),
        )
        if self.standard is None:
            yield from draws
            return
        for sample in draws:
            yield self.standard.apply(sample, sample["dataset"])

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        nw, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        self._prepare(nw)
        state = self._state
        local = (state["next"] + wid) % nw
        skip = state["consumed"][local]
        samples = self._role_samples(self.rank * nw + local, self.world_size * nw, state["epoch"], skip)
        in_main = info is None
        for item, count in self._batches(samples):
            item[_ROLE], item[_COUNT] = local, count
            if in_main:
                self._advance(local, count)
            yield item
        if in_main:
            self._end_epoch()

    def _batches(self, samples: Iterator[dict]) -> Iterator[tuple[dict, int]]:
        if self.batch_size is None:
            for s in samples:
                yield to_torch(s), 1
            return
        ragged = _RAGGED if self.standard is not None and not self.standard.padded else ()
        batch: list[dict] = []
        for s in samples:
            batch.append(s)
            if len(batch) == self.batch_size:
                yield collate(batch, ragged), len(batch)
                batch = []
        if batch:
            yield collate(batch, ragged), len(batch)

    def decode_actions(self, batch: dict) -> np.ndarray | list[np.ndarray]:
        """A mixture batch's ``tokens`` decoded to actions (float64), each sample with its own dataset's
        tokenizer (or the pooled one); NaN beyond a sample's own width (see loading/standard.py)."""
        if self.standard is None:
            raise LoaderError("decode_actions needs a mixture with a [target] layout")
        tokens = batch["tokens"]
        tokens = [t.numpy() for t in tokens] if isinstance(tokens, list) else tokens.numpy()
        return self.standard.decode(tokens, batch["dataset"].numpy())

    # ---- state -----------------------------------------------------------------------------------

    def _fresh_state(self, epoch: int, num_workers: int) -> dict:
        return {
            "epoch": int(epoch),
            "num_workers": int(num_workers),
            "consumed": [0] * num_workers,
            "next": 0,
        }

    def _advance(self, local: int, count: int) -> None:
        self._state["consumed"][local] += count
        self._state["next"] = (local + 1) % self._state["num_workers"]

    def _end_epoch(self) -> None:
        self._state = self._fresh_state(self._state["epoch"] + 1, self._state["num_workers"])

    def _prepare(self, num_workers: int) -> None:
        nw = max(1, num_workers)
        if self._state["num_workers"] != nw:
            if any(self._state["consumed"]):
                raise LoaderError(
                    f"state was saved with {self._state['num_workers']} workers, this loader has {nw}: "
                    "exact resume needs the same number"
                )
            self._state = self._fresh_state(self._state["epoch"], nw)

    @property
    def epoch(self) -> int:
        return self._state["epoch"]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (drops any mid-epoch position)."""
        self._state = self._fresh_state(epoch, self._state["num_workers"])

    def _identity(self) -> dict:
        return {
            "sources": [s.fingerprint() for s in self.sources],
            "weights": list(self.weights) if self.weights else None,
            "samples_per_epoch": self.samples_per_epoch,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "shuffle_buffer": self.shuffle_buffer,
            "shuffle_shards": self.shuffle_shards,
            "batch_size": self.batch_size,
        }

    def state_dict(self) -> dict:
        """Plain JSON-able position: epoch, samples consumed per worker role, the next role, and what
        fixes the order (seed, rank, world size, shuffle buffer, batch size, shard fingerprint)."""
        s = self._state
        return {
            "version": STATE_VERSION,
            **self._identity(),
            "epoch": s["epoch"],
            "num_workers": s["num_workers"],
            "consumed": list(s["consumed"]),
            "next": s["next"],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``; raises :class:`LoaderError` if it was saved under a different order."""
        if state.get("version") != STATE_VERSION:
            raise LoaderError(f"state version {state.get('version')!r}, expected {STATE_VERSION}")
        mine = self._identity()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            raise LoaderError(f"state does not match this dataset (saved, current): {diff}")
        nw = int(state["num_workers"])
        consumed = [int(c) for c in state["consumed"]]
        if len(consumed) != nw or not 0 <= int(state["next"]) < nw:
            raise LoaderError("state is inconsistent: consumed/next do not match num_workers")
        self._state = {
            "epoch": int(state["epoch"]),
            "num_workers": nw,
            "consumed": consumed,
            "next": int(state["next"]),
        }


def _check_compatible(sources: tuple[SplitSource, ...]) -> None:
    first = sources[0]
    for s in sources[1:]:
        if s.cameras != first.cameras or set(s.features) != set(first.features):
            raise LoaderError(
                f"mixture datasets differ: {first.root} has cameras {list(first.cameras)} and fields "
                f"{sorted(first.features)}, {s.root} has {list(s.cameras)} and {sorted(s.features)}; "
                "give the mixture file a [target] table to mix different robots (docs/loader.md)"
            )


# ---- tensors ---------------------------------------------------------------------------------------


def _image_chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_torch(sample: dict) -> dict:
    """One decoded sample as tensors: images uint8 ``[C, H, W]``, arrays as tensors, strings kept."""
    out: dict = {}
    for k, v in sample.items():
        if k == "images":
            out[k] = {c: _image_chw(a) if isinstance(a, np.ndarray) else a for c, a in v.items()}
        elif isinstance(v, np.ndarray):
            out[k] = torch.from_numpy(v)
        else:
            out[k] = v
    return out


def _stack(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack equal shapes; pad ragged first dimensions with -1 and return the lengths as well."""
    if all(a.shape == arrays[0].shape for a in arrays):
        return torch.from_numpy(np.stack(arrays)), None
    longest = max(a.shape[0] for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), -1, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return torch.from_numpy(out), torch.tensor([a.shape[0] for a in arrays], dtype=torch.int64)


def _stack_images(images: list[np.ndarray]) -> torch.Tensor:
    """HWC uint8 images to one ``[B, C, H, W]`` tensor, each image copied once into place. In a
    DataLoader worker the tensor is allocated in shared memory (as torch's ``default_collate`` does),
    so handing it to the main process copies nothing more."""
    h, w, c = images[0].shape
    shape = (len(images), c, h, w)
    if get_worker_info() is None:
        out = torch.empty(shape, dtype=torch.uint8)
    else:
        storage = torch.UntypedStorage._new_shared(len(images) * c * h * w)
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    dest = out.numpy()
    for i, a in enumerate(images):
        if a.size and not any(a.strides):  # one value repeated (a mixture's missing camera): a fill
            dest[i] = a.flat[0]
        else:
            dest[i] = a.transpose(2, 0, 1)
    return out


def collate(samples: list[dict], ragged: tuple[str, ...] = ()) -> dict:
    """Decoded samples (from the same dataset layout) to one batch dict.

    ``images``: ``{camera: uint8 [B, C, H, W]}``; each ``<name>.npy`` as a ``[B, ...]`` tensor
    (``state``, ``action``, ``tokens``, ``token_ids``, ``action_chunk``...), ragged ones (FAST tokens)
    padded with -1 plus ``<name>_length``; ``instruction``, ``key``, ``episode``, ``embodiment``:
    lists of str; ``step`` int64, ``time`` float64, ``is_first``/``is_last`` bool; ``meta``: the dicts;
    ``dataset`` (int64) in a mixture. The arrays named in ``ragged`` stay lists of tensors.
    """
    first = samples[0]
    batch: dict = {"key": [s["key"] for s in samples], "instruction": [s["instruction"] for s in samples]}
    batch["images"] = {}
    for cam, img in first["images"].items():
        if isinstance(img, np.ndarray):
            batch["images"][cam] = _stack_images([s["images"][cam] for s in samples])
        else:
            batch["images"][cam] = [s["images"][cam] for s in samples]
    for k, v in first.items():
        if isinstance(v, np.ndarray) and k in ragged:
            batch[k] = [torch.from_numpy(s[k]) for s in samples]
        elif isinstance(v, np.ndarray):
            batch[k], lengths = _stack([s[k] for s in samples])
            if lengths is not None:
                batch[f"{k}_length"] = lengths
        elif k not in ("key", "instruction", "images", "meta", "dataset") and isinstance(v, str):
            batch[k] = [s[k] for s in samples]
    metas = [s["meta"] for s in samples]
    for k, dtype in _META_SCALARS.items():
        if all(k in m for m in metas):
            batch[k] = torch.tensor([m[k] for m in metas], dtype=dtype)
    for k in _META_STRINGS:
        if all(k in m for m in metas):
            batch[k] = [m[k] for m in metas]
    batch["meta"] = metas
    if "dataset" in first:
        batch["dataset"] = torch.tensor([s["dataset"] for s in samples], dtype=torch.int64)
    return batch


# ---- entry points ----------------------------------------------------------------------------------


def open_dataset(
    path: str | Path,
    split: str = "train",
    *,
    batch_size: int | None = None,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle_shards: bool = True,
    decode_images: bool = True,
) -> TrajDataset:
    """A :class:`TrajDataset` over ``split`` of the trajshard output ``path``, or over a mixture file
    (``.toml``/``.json``, see :func:`open_mixture`; ``split`` is then taken from the file).

    ``shuffle_buffer <= 1`` and ``shuffle_shards=False`` give the stored order (for evaluation).
    ``seed`` defaults to 0 (or the mixture file's ``seed``).
    """
    if is_mixture_file(path):
        return open_mixture(
            path,
            batch_size=batch_size,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            rank=rank,
            world_size=world_size,
            shuffle_shards=shuffle_shards,
            decode_images=decode_images,
        )
    return TrajDataset(
        (open_split(path, split),),
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        shuffle_shards=shuffle_shards,
        seed=0 if seed is None else seed,
        rank=rank,
        world_size=world_size,
        decode_images=decode_images,
    )


def open_mixture(
    mixture: str | Path | Mixture,
    *,
    batch_size: int | None = None,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle_shards: bool = True,
    decode_images: bool = True,
) -> TrajDataset:
    """A :class:`TrajDataset` drawing each sample from a mixture's datasets by weight (deterministic:
    draw ``k`` of a worker role is a hash of ``(seed, role, k)``); one epoch is ``samples_per_epoch``."""
    mix = mixture if isinstance(mixture, Mixture) else read_mixture(mixture)
    standard = mix.standardizer(decode_images)
    return TrajDataset(
        mix.sources,
        weights=mix.weights,
        samples_per_epoch=mix.samples_per_epoch,
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        shuffle_shards=shuffle_shards,
        seed=seed if seed is not None else (mix.seed or 0),
        rank=rank,
        world_size=world_size,
        decode_images=decode_images,
        standard=standard,
    )


def arrays_inline(item: dict) -> dict:
    """In a DataLoader worker: an item's top-level tensors (all but images) as numpy arrays, so they
    travel pickled inside the item's message; a tensor would travel as its own shared-memory file,
    one file descriptor handed over per tensor per batch. Images stay shared-memory tensors."""
    for k, v in item.items():
        if isinstance(v, torch.Tensor):
            item[k] = v.numpy()
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            item[k] = [t.numpy() for t in v]
    return item


def arrays_as_tensors(item: dict) -> dict:
    """In the main process: undo :func:`arrays_inline` (the arrays it made are the only numpy values
    of an item)."""
    for k, v in item.items():
        if isinstance(v, np.ndarray):
            item[k] = torch.from_numpy(v)
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            item[k] = [torch.from_numpy(a) for a in v]
    return item


class _EpochFeed(IterableDataset):
    """What a :class:`TrajLoader`'s persistent DataLoader iterates: the dataset and its position
    (epoch, next role, samples consumed per role) in a shared-memory tensor.

    Invariant: the main process writes the position before each ``iter(DataLoader)``, and a worker
    reads it only in ``__iter__``, which torch calls when that worker starts (first pass) or when it
    receives the next pass's resume signal, after the write. A worker's own copy of the dataset
    never advances its state: its role and skip come from the shared position alone.
    """

    def __init__(self, dataset: TrajDataset, num_workers: int) -> None:
        super().__init__()
        self.dataset = dataset
        # [epoch, next, consumed[0], ..., consumed[num_workers - 1]]
        self.position = torch.zeros(2 + num_workers, dtype=torch.int64).share_memory_()

    def write(self, state: dict) -> None:
        self.position.copy_(torch.tensor([state["epoch"], state["next"], *state["consumed"]]))

    def read(self) -> dict:
        epoch, nxt, *consumed = (int(v) for v in self.position.tolist())
        return {"epoch": epoch, "num_workers": len(consumed), "consumed": consumed, "next": nxt}

    def __iter__(self) -> Iterator[dict]:
        self.dataset._state = self.read()  # this worker's copy only; the main process keeps its own
        return iter(self.dataset)


class TrajLoader:
    """A ``torch.utils.data.DataLoader`` over a :class:`TrajDataset` that tracks what it handed out.

    Iterate it once per epoch. ``state_dict()`` at any point (between batches) and ``load_state_dict()``
    on a fresh loader with the same dataset arguments and ``num_workers`` give exactly the rest of the
    epoch, in the same order. The workers are persistent: started at the first pass, they serve every
    later pass, each starting at the position written to shared memory before it; :meth:`close`
    stops them (so does dropping the loader).
    """

    def __init__(self, dataset: TrajDataset, num_workers: int = 2, **dataloader_kwargs) -> None:
        for k in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn", "persistent_workers"):
            if k in dataloader_kwargs:
                raise LoaderError(f"{k} is set by the dataset (open_dataset) or by the loader")
        self.dataset = dataset
        self.num_workers = int(num_workers)
        self.dataloader_kwargs = dataloader_kwargs
        self._feed: _EpochFeed | None = None
        self._loader: DataLoader | None = None
        dataset._prepare(self.num_workers)

    def __len__(self) -> int:
        return self.dataset.num_batches(self.num_workers)

    @property
    def _lean(self) -> bool:
        """Small arrays travel inline (pinning needs tensors from the worker)."""
        return not self.dataloader_kwargs.get("pin_memory")

    def _dataloader(self) -> tuple[DataLoader, _EpochFeed]:
        """The one DataLoader of this loader, created at the first pass with persistent workers."""
        if self._loader is None or self._feed is None:
            kwargs = dict(self.dataloader_kwargs)
            if self._lean:
                kwargs["collate_fn"] = arrays_inline
            self._feed = _EpochFeed(self.dataset, self.num_workers)
            self._loader = DataLoader(
                self._feed, batch_size=None, num_workers=self.num_workers, persistent_workers=True, **kwargs
            )
        return self._loader, self._feed

    def __iter__(self) -> Iterator[dict]:
        ds = self.dataset
        ds._prepare(self.num_workers)
        if self.num_workers == 0:
            for item in ds:
                item.pop(_ROLE), item.pop(_COUNT)
                yield item
            return
        loader, feed = self._dataloader()
        feed.write(ds._state)  # before iter(): the workers' next __iter__ reads it
        try:
            # iter() of a persistent DataLoader drops the batches an abandoned pass left in flight
            # (each worker's are before its resume acknowledgement), so only this pass's come out
            for item in loader:
                if self._lean:
                    item = arrays_as_tensors(item)
                local, count = int(item.pop(_ROLE)), int(item.pop(_COUNT))
                ds._advance(local, count)
                yield item
        except Exception:
            self.close()  # a failed pass (a worker error or death): the next pass starts new workers
            raise
        ds._end_epoch()

    def close(self) -> None:
        """Stop the workers; a later pass starts new ones."""
        it = None if self._loader is None else self._loader._iterator
        if it is not None:
            it._shutdown_workers()
        self._loader = self._feed = None

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
        self.dataset._prepare(self.num_workers)  # a mid-epoch state needs the same number of workers


def make_loader(dataset: TrajDataset, num_workers: int = 2, **dataloader_kwargs) -> TrajLoader:
    """A :class:`TrajLoader` (DataLoader with resume bookkeeping); extra kwargs go to ``DataLoader``
    (``pin_memory``, ``prefetch_factor``, ``multiprocessing_context``, ``timeout``...)."""
    return TrajLoader(dataset, num_workers=num_workers, **dataloader_kwargs)


__all__ = [
    "LoaderError",
    "TrajDataset",
    "TrajLoader",
    "collate",
    "default_rank_world",
    "make_loader",
    "open_dataset",
    "open_mixture",
    "to_torch",
]
