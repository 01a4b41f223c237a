"""Reader for ROS 2 recordings in MCAP: one bag (a ``.mcap`` file, or a rosbag2 folder of splits) per
episode, laid out as sources/mcap_layout.py finds them.

With a source mapping (``[mapping]``, sources/mapping.py) an episode is read by
sources/mcap_mapped.py: several topics concatenated into the state and action on one time base, an
instruction from any metadata record, videos in a folder beside the bag (sources/mcap_videos.py).
Without one, by sources/mcap_legacy.py, as before, from the ``mcap`` table:

- ``state_topic``   a ``sensor_msgs/JointState`` topic, its ``position`` is proprio [the JointState
                    topic whose name has "joint_states", or the only JointState topic];
- ``action_topic``  a ``sensor_msgs/JointState`` topic of commands [one whose name has "command" or
                    "action"; none: actions are derived from proprio];
- ``cameras``       ``{name: topic}`` of ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or
                    ``sensor_msgs/CompressedImage`` (jpeg, png) topics [every image topic];
- ``stamp``         ``"header"`` (the message's ``header.stamp``) or ``"log"`` (the recorder's log time)
                    ["header"], in both modes.

``describe`` (sources/mcap_describe.py) lists a source and writes the mapping template.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from trajshard.schemas.episode import (
    Camera,
    Episode,
    EpisodeError,
    check_by_loading,
)
from trajshard.schemas.problems import Problem
from trajshard.sources.contain import contained, regular_file
from trajshard.sources.mapping import Mapping, as_mapping
from trajshard.sources.mcap_bag import iter_images
from trajshard.sources.mcap_describe import describe
from trajshard.sources.mcap_layout import EpisodeFiles, find_episodes
from trajshard.sources.mcap_legacy import load_legacy
from trajshard.sources.mcap_mapped import McapSettings, load_mapped

__all__ = ["McapSource", "describe"]


class McapSource:
    format = "mcap"

    def __init__(
        self, root: str | os.PathLike, options: dict | None = None, mapping: Mapping | dict | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.options = dict(options or {})
        self.mapping = as_mapping(mapping)
        self.settings = McapSettings.of(self.options)
        if self.mapping.episodes:
            raise ValueError(
                "mapping.episodes is not read for MCAP: each bag (or rosbag2 folder) is an episode"
            )
        self.notes: list[str] = []
        # every file an episode opens lies in here (SOURCE's folder when SOURCE is one bag)
        self.base = self.root.parent if self.root.is_file() else self.root
        self.episodes = find_episodes(self.root)
        if not self.episodes:
            raise FileNotFoundError(f"{root}: no .mcap file (nor a folder of one)")

    def plan(self) -> tuple[list[str], list[Problem]]:
        return list(self.episodes), []

    def _files(self, episode_id: str) -> EpisodeFiles:
        if episode_id not in self.episodes:
            raise EpisodeError(episode_id, "mcap", "no such episode file")
        return self.episodes[episode_id]

    def load(self, episode_id: str) -> Episode:
        files = self._files(episode_id)
        for bag in files.bags:  # a link out of the source, a FIFO: refused before it is opened
            regular_file(contained(self.base, bag, episode_id, files.label), episode_id)
        try:
            if self.mapping.empty:
                return load_legacy(episode_id, files.bags[0], self.options)
            return load_mapped(files, self.base, self.mapping, self.settings)
        except EpisodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt bag is this episode's problem
            raise EpisodeError(episode_id, files.label, f"cannot be read as ROS 2 MCAP: {exc}") from exc

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator:
        path, topic = camera.path.split("#", 1)
        bags = next((f.bags for f in self.episodes.values() if str(f.bags[0]) == path), (Path(path),))
        return iter_images(bags, topic, start_pts)
