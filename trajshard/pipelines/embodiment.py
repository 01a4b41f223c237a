"""The robot a dataset was recorded on, recorded with it so datasets of different robots can be mixed.

The ``embodiment`` section of a job config says what trajshard cannot read off the data: the robot's
name, its control rate, what its actions mean (joint or end-effector, absolute or delta, in which
frame), which dimensions of the state and action vectors are the arm, the gripper, the base, the
hands (named slices ``[start, stop)``), what each camera is (its role: ``primary``, ``secondary``,
``wrist``, ...) and, when given, the cameras' intrinsics. :func:`embodiment_record` turns it, with
what the job found, into the ``embodiment`` object of ``meta/info.json`` (docs/output-layout.md); a
slice or a camera that does not fit the dataset is refused by name (:func:`embodiment_problems`).
The gripper convention stays where it is (the ``align`` section's ``gripper``, info.json ``gripper``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trajshard.pipelines.frames import ImageConfig, placement
from trajshard.schemas.episode import MAX_EMBODIMENT_BYTES, text_problem

ACTION_SPACES = ("unknown", "joint", "eef", "mixed")
ACTION_MODES = ("unknown", "absolute", "delta", "velocity")
# names a loader or a trainer may expect; any other identifier is allowed too
SLICE_NAMES = ("arm", "left_arm", "right_arm", "gripper", "left_gripper", "right_gripper", "hands")
SLICE_NAMES += ("left_hand", "right_hand", "base", "torso", "head", "eef_pos", "eef_rot")
CAMERA_ROLES = ("primary", "secondary", "wrist", "left_wrist", "right_wrist")
INTRINSICS_KEYS = ("fx", "fy", "cx", "cy", "width", "height")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class EmbodimentConfig:
    """The ``embodiment`` section of a job config (flat keys: ``embodiment`` for the name, the others
    by their field names)."""

    name: str | None = None  # None: the one embodiment the source's episodes name, if they agree
    control_rate: float | None = None  # Hz the robot was commanded at; None: the target clock's fps
    action_space: str = "unknown"  # joint, eef (end-effector) or mixed (e.g. arm joints + eef)
    action_mode: str = "unknown"  # absolute, delta or velocity
    action_frame: str | None = None  # the frame eef actions are in (base, world, tool, camera, ...)
    state_layout: dict[str, list[int]] = field(default_factory=dict)  # slice name -> [start, stop)
    action_layout: dict[str, list[int]] = field(default_factory=dict)
    camera_roles: dict[str, str] = field(default_factory=dict)  # camera -> role; absent: its own name
    intrinsics: dict[str, dict[str, float]] = field(default_factory=dict)  # camera -> fx, fy, cx, cy, w, h

    CHOICES = {"action_space": ACTION_SPACES, "action_mode": ACTION_MODES}

    def problems(self) -> list[str]:
        out = [
            f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
            for name, allowed in self.CHOICES.items()
            if getattr(self, name) not in allowed
        ]
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            out.append(f"embodiment must be a non-empty name, got {self.name!r}")
        elif self.name is not None and (why := text_problem(self.name, "embodiment", MAX_EMBODIMENT_BYTES)):
            out.append(f"{why} (a robot's name)")
        if self.control_rate is not None and not (
            isinstance(self.control_rate, int | float) and self.control_rate > 0
        ):
            out.append(f"control_rate must be positive Hz, got {self.control_rate!r}")
        for key in ("state_layout", "action_layout"):
            out += _layout_problems(key, getattr(self, key))
        out += _roles_problems(self.camera_roles)
        out += _intrinsics_problems(self.intrinsics)
        return out


def _layout_problems(key: str, layout: object) -> list[str]:
    if not isinstance(layout, dict):
        return [f"{key} must map slice names to [start, stop], got {layout!r}"]
    out = []
    for name, sl in layout.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            out.append(f"{key}: slice name {name!r} must match [A-Za-z][A-Za-z0-9_]*")
        ok = (
            isinstance(sl, list | tuple)
            and len(sl) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in sl)
            and 0 <= sl[0] < sl[1]
        )
        if not ok:
            out.append(f"{key}.{name} must be [start, stop] with 0 <= start < stop, got {sl!r}")
    return out


def _roles_problems(roles: object) -> list[str]:
    if not isinstance(roles, dict):
        return [f"camera_roles must map camera names to roles, got {roles!r}"]
    out = [
        f"camera_roles.{cam}: role {role!r} must match [A-Za-z][A-Za-z0-9_]*"
        for cam, role in roles.items()
        if not isinstance(role, str) or not _NAME_RE.match(role)
    ]
    seen: dict[str, str] = {}
    for cam, role in roles.items():
        if role in seen:
            out.append(f"camera_roles: cameras {seen[role]!r} and {cam!r} both have the role {role!r}")
        seen.setdefault(role, cam)
    return out


def _intrinsics_problems(intrinsics: object) -> list[str]:
    if not isinstance(intrinsics, dict):
        return [f"intrinsics must map camera names to {{{', '.join(INTRINSICS_KEYS)}}}, got {intrinsics!r}"]
    out = []
    for cam, k in intrinsics.items():
        if not isinstance(k, dict) or set(k) != set(INTRINSICS_KEYS):
            out.append(f"intrinsics.{cam} needs exactly the keys {list(INTRINSICS_KEYS)}, got {k!r}")
            continue
        bad = [
            n
            for n in INTRINSICS_KEYS
            if isinstance(k[n], bool)
            or not isinstance(k[n], int | float)
            or (k[n] < 0 if n in ("cx", "cy") else not k[n] > 0)
        ]
        if bad:
            out.append(f"intrinsics.{cam}: {bad} must be numbers (fx, fy, width, height > 0; cx, cy >= 0)")
    return out


def embodiment_problems(
    cfg: EmbodimentConfig, action_dim: int, state_dim: int, cameras: list[str] | tuple[str, ...]
) -> list[str]:
    """What in the section does not fit the dataset: a slice past its vector's width, a camera it
    does not have (each message names the slice or the camera)."""
    out = []
    for key, width, what in (
        ("action_layout", action_dim, "actions"),
        ("state_layout", state_dim, "states"),
    ):
        for name, (start, stop) in getattr(cfg, key).items():
            if stop > width:
                out.append(
                    f"embodiment {key}.{name} = [{start}, {stop}] does not fit the dataset's {width}-D {what}"
                )
    for key in ("camera_roles", "intrinsics"):
        for cam in getattr(cfg, key):
            if cam not in cameras:
                out.append(f"embodiment {key} names camera {cam!r}, the dataset has {list(cameras)}")
    return out


def stored_intrinsics(k: dict[str, float], image: ImageConfig) -> dict[str, float]:
    """The intrinsics of the stored ``size`` x ``size`` image, from those of the source image (its
    ``width`` x ``height``), as the image section places it (stretch, pad or center-crop)."""
    w, h, top, left = placement(int(k["width"]), int(k["height"]), image.size, image.resize_mode)
    sx, sy = w / k["width"], h / k["height"]
    if image.resize_mode == "pad":
        dx, dy = left, top
    elif image.resize_mode == "center-crop":
        dx, dy = -left, -top
    else:
        dx = dy = 0
    return {
        "fx": float(k["fx"] * sx),
        "fy": float(k["fy"] * sy),
        "cx": float(k["cx"] * sx + dx),
        "cy": float(k["cy"] * sy + dy),
        "width": image.size,
        "height": image.size,
    }


def embodiment_record(
    cfg: EmbodimentConfig,
    fps: float,
    image: ImageConfig,
    action_dim: int,
    state_dim: int,
    cameras: list[str] | tuple[str, ...],
    source_embodiments: list[str],
) -> dict[str, object]:
    """The ``embodiment`` object of info.json. Call :func:`embodiment_problems` first."""
    named = sorted({e for e in source_embodiments if e})
    if cfg.name is not None:
        name, name_from = cfg.name, "config"
    elif len(named) == 1:
        name, name_from = named[0], "source"
    else:
        name, name_from = None, None
    return {
        "name": name,
        "name_from": name_from,
        "control_rate": float(cfg.control_rate if cfg.control_rate is not None else fps),
        "action_space": {"kind": cfg.action_space, "mode": cfg.action_mode, "frame": cfg.action_frame},
        "action_dim": int(action_dim),
        "state_dim": int(state_dim),
        "action_layout": {k: list(v) for k, v in cfg.action_layout.items()},
        "state_layout": {k: list(v) for k, v in cfg.state_layout.items()},
        "cameras": {cam: cfg.camera_roles.get(cam, cam) for cam in sorted(cameras)},
        "intrinsics": {
            cam: {"source": _numbers(k), "stored": stored_intrinsics(k, image)}
            for cam, k in sorted(cfg.intrinsics.items())
        },
    }


def _numbers(k: dict[str, float]) -> dict[str, float]:
    return {n: int(k[n]) if n in ("width", "height") else float(k[n]) for n in INTRINSICS_KEYS}
