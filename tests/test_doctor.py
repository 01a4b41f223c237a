"""trajshard doctor: every check has a fixture that trips it, none trips on the demo, the real datasets'
known faults are found (grouped), and ingest writes meta/quality.json, summarized in the card and stats."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import shared_data
from tests.lerobot_v3 import write_v3
from trajshard.cli import main
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.doctor import CHECKS, DoctorReport, doctor_output, doctor_source
from trajshard.reports.summary import render_stats, stats_report
from trajshard.sources.synthetic import write_synthetic_dataset

DOCS = Path(__file__).resolve().parents[1] / "docs" / "doctor.md"


def codes(report: DoctorReport) -> dict[str, list]:
    out: dict[str, list] = {}
    for g in report.groups:
        out.setdefault(g.code, []).append(g)
    return out


def ingest(src: Path, out: Path, **flags) -> Path:
    """An ingest that also accepts the low-dimensional (image-less) sources of these tests."""
    flags = {"no_images": True, **flags}
    run_ingest(str(src), str(out), JobConfig.from_flags(workers=0, **flags), progress=False)
    return out


# -- fixtures: a low-dimensional raw source, and videos rewritten ------------------------------------


def lowdim(
    root: Path, tweak: Callable | None = None, n: int = 6, seconds: float = 3.0, rate: float = 20.0
) -> Path:
    """``n`` raw episodes without cameras: smooth state (3 sinusoids and a two-valued dim), the action
    the state 0.1 s ahead. ``tweak(i, t, state, action, meta)`` may change any of them (arrays in place,
    or returns new ones)."""
    for i in range(n):
        t = np.arange(int(seconds * rate) + 1) / rate
        state = _arm(t, i)
        action = _arm(t + 0.1, i)
        meta = {"instruction": f"task number {i}"}
        if tweak is not None:
            t, state, action, meta = tweak(i, t, state, action, meta) or (t, state, action, meta)
        ep = root / f"ep_{i:03d}"
        ep.mkdir(parents=True, exist_ok=True)
        (ep / "episode.json").write_text(json.dumps(meta))
        for name, values in (("proprio", state), ("action", action)):
            table = pa.table(
                {
                    "timestamp": pa.array(t, pa.float64()),
                    name: pa.array(values.tolist(), pa.list_(pa.float32())),
                }
            )
            pq.write_table(table, ep / f"{name}.parquet")
    return root


def _arm(t: np.ndarray, i: int) -> np.ndarray:
    phase = 0.7 * i
    return np.stack(
        [
            np.sin(1.1 * t + phase),
            np.cos(0.7 * t + phase),
            0.3 * np.sin(1.9 * t + phase),
            (np.sin(2.0 * t + phase) > 0).astype(float),
        ],
        axis=1,
    )


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """H.264 at ``fps``, frame i at i / fps (the synthetic front camera's timing)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = Fraction(1, fps)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def rewrite_front(raw: Path, episode: str, change: Callable[[list[np.ndarray]], list[np.ndarray]]) -> None:
    path = raw / episode / "front.mp4"
    write_video(path, change(frames_of(path)))


def upscaled(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame made from one of half its size, scaled back up (bicubic)."""
    h, w = frames[0].shape[:2]
    return [
        np.asarray(Image.fromarray(f).resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC))
        for f in frames
    ]


def v3_source(root: Path) -> Path:
    """A LeRobot v3 source whose metadata declares a camera with no video, lists the placeholder task
    'valid', and whose rows all carry task 0 of its two real tasks."""
    write_v3(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.images.side"] = {"dtype": "video", "shape": [64, 64, 3]}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(
        pa.table({"task_index": [0, 1, 2], "task": ["pick the marker", "place the marker", "valid"]}),
        root / "meta" / "tasks.parquet",
    )
    data = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    zeros = pa.array(np.zeros(len(table), dtype=np.int64))
    pq.write_table(table.set_column(table.column_names.index("task_index"), "task_index", zeros), data)
    return root


# -- one fixture per check ---------------------------------------------------------------------------


def _unusable(tmp: Path, raw: Path) -> DoctorReport:
    for ep in ("ep_003", "ep_004", "ep_007"):
        (raw / ep / "proprio.parquet").write_bytes(b"not a parquet file")
    return doctor_source(str(raw))


def _dead(tmp: Path, raw: Path) -> DoctorReport:
    rewrite_front(raw, "ep_001", lambda fr: [np.zeros_like(fr[0])] * len(fr))
    return doctor_source(str(raw))


def _constant(tmp: Path, raw: Path) -> DoctorReport:
    rewrite_front(raw, "ep_002", lambda fr: [fr[10]] * len(fr))
    return doctor_source(str(raw))


def _frozen(tmp: Path, raw: Path) -> DoctorReport:
    rewrite_front(raw, "ep_000", lambda fr: fr[:30] + [fr[30]] * 45 + fr[75:])  # 1.5 s, the arm moving
    return doctor_source(str(raw))


def _upscaled(tmp: Path, raw: Path) -> DoctorReport:
    for ep in sorted(p.name for p in raw.iterdir()):
        rewrite_front(raw, ep, upscaled)
    return doctor_source(str(raw))


def _duration(tmp: Path, raw: Path) -> DoctorReport:
    rewrite_front(raw, "ep_000", lambda fr: fr[: len(fr) // 2])
    return doctor_source(str(raw))


def _rate(tmp: Path, raw: Path) -> DoctorReport:
    return doctor_source(str(raw), JobConfig.from_flags(fps=40))


def _note(tmp: Path, raw: Path) -> DoctorReport:
    return doctor_source(str(v3_source(tmp / "v3")))


def _single(tmp: Path, raw: Path) -> DoctorReport:
    return doctor_source(str(v3_source(tmp / "v3")))


def _dims(tmp: Path, raw: Path) -> DoctorReport:
    def tweak(i, t, state, action, meta):
        state[:, 2] = 0.25

    return doctor_source(str(lowdim(tmp / "low", tweak)))


def _jump(tmp: Path, raw: Path) -> DoctorReport:
    def tweak(i, t, state, action, meta):
        if i == 1:
            state[30, 0] += 5.0  # one sample teleported and back

    return doctor_source(str(lowdim(tmp / "low", tweak)))


def _idle(edge: str) -> Callable:
    def run(tmp: Path, raw: Path) -> DoctorReport:
        def tweak(i, t, state, action, meta):
            if i == 2:
                span = t < 1.5 if edge == "start" else t > t[-1] - 1.5
                action[span] = action[np.flatnonzero(span)[-1 if edge == "start" else 0]]

        return doctor_source(str(lowdim(tmp / "low", tweak)))

    return run


def _gripper_not_binary(tmp: Path, raw: Path) -> DoctorReport:
    cfg = JobConfig.from_flags(gripper={"dim": 0, "threshold": 0.0})  # dim 0 is a sinusoid
    return doctor_source(str(lowdim(tmp / "low")), cfg)


def _gripper_one_sided(tmp: Path, raw: Path) -> DoctorReport:
    out = ingest(lowdim(tmp / "low"), tmp / "out", gripper={"dim": 3, "threshold": 5.0})  # never above 5
    return doctor_output(str(out))


def _length(tmp: Path, raw: Path) -> DoctorReport:
    lowdim(tmp / "low")
    lowdim(tmp / "short", n=1, seconds=0.5)
    shutil.move(tmp / "short" / "ep_000", tmp / "low" / "ep_short")
    return doctor_source(str(tmp / "low"))


def _duplicate(tmp: Path, raw: Path) -> DoctorReport:
    shutil.copytree(raw / "ep_000", raw / "ep_000_copy")
    return doctor_source(str(raw))


def _instruction(meta_of: Callable[[int], dict | None]) -> Callable:
    def run(tmp: Path, raw: Path) -> DoctorReport:
        def tweak(i, t, state, action, meta):
            return t, state, action, meta_of(i) or meta

        return doctor_source(str(lowdim(tmp / "low", tweak)))

    return run


def _empty(tmp: Path, raw: Path) -> DoctorReport:
    """LeRobot rows of episode 0's second half carry a task whose text is empty."""
    root = tmp / "v3"
    write_v3(root)
    pq.write_table(
        pa.table({"task_index": [0, 1, 2], "task": ["pick the marker", "place the marker", ""]}),
        root / "meta" / "tasks.parquet",
    )
    data = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    task = table.column("task_index").to_numpy().copy()
    task[15:30] = 2  # episode 0 is rows 0-29
    pq.write_table(
        table.set_column(table.column_names.index("task_index"), "task_index", pa.array(task)), data
    )
    return doctor_source(str(root))


FIXTURES: dict[str, tuple[Callable, str]] = {  # code -> (fixture, the episode or text a finding names)
    "episode.unusable": (_unusable, "ep_003"),
    "source.note": (_note, "observation.images.side"),
    "camera.dead": (_dead, "ep_001"),
    "camera.constant": (_constant, "ep_002"),
    "camera.frozen": (_frozen, "ep_000"),
    "camera.upscaled": (_upscaled, "'front'"),
    "video.duration": (_duration, "ep_000"),
    "rate.duplicated": (_rate, "'action'"),
    "dims.constant": (_dims, "dims 2"),
    "motion.jump": (_jump, "ep_001"),
    "idle.start": (_idle("start"), "ep_002"),
    "idle.end": (_idle("end"), "ep_002"),
    "gripper.not_binary": (_gripper_not_binary, "ep_000"),
    "gripper.one_sided": (_gripper_one_sided, "dim 3"),
    "episode.length": (_length, "ep_short"),
    "episode.duplicate": (_duplicate, "ep_000_copy"),
    "instruction.empty": (_empty, "episode_000000"),
    "instruction.placeholder": (
        _instruction(lambda i: {"instruction": "valid"} if i == 5 else None),
        "ep_005",
    ),
    "instruction.single": (_single, "2 tasks"),
}


def test_every_check_has_a_fixture_and_there_are_at_least_15():
    assert set(FIXTURES) == set(CHECKS) and len(CHECKS) >= 15


@pytest.mark.parametrize("code", sorted(FIXTURES))
def test_fixture_trips_its_check(code, raw_copy, tmp_path):
    fixture, named = FIXTURES[code]
    report = fixture(tmp_path, raw_copy)
    found = codes(report)
    assert code in found, report.render()
    text = json.dumps([g.to_json() for g in found[code]])
    assert named in text, report.render()


def test_the_lowdim_fixture_itself_trips_nothing(tmp_path):
    report = doctor_source(str(lowdim(tmp_path / "low")))
    assert report.groups == [], report.render()


def test_findings_of_one_kind_are_one_line_with_a_count(raw_copy, tmp_path):
    report = _unusable(tmp_path, raw_copy)
    (group,) = codes(report)["episode.unusable"]
    assert (group.count, group.of) == (3, 8) and len(group.examples) == 3
    assert not report.ok and report.episodes == 5


def test_camera_faults_are_found_in_the_output_too(raw_copy, tmp_path):
    rewrite_front(raw_copy, "ep_000", lambda fr: fr[:30] + [fr[30]] * 45 + fr[75:])
    rewrite_front(raw_copy, "ep_001", lambda fr: [np.zeros_like(fr[0])] * len(fr))
    rewrite_front(raw_copy, "ep_002", lambda fr: [fr[10]] * len(fr))
    out = ingest(raw_copy, tmp_path / "out")
    found = codes(doctor_output(str(out)))
    assert {"camera.frozen", "camera.dead", "camera.constant"} <= set(found)
    assert [g.examples[0][0] for g in found["camera.dead"]] == ["ep_001"]


def test_upscaling_by_the_image_size_is_found_in_the_output(synthetic_raw, tmp_path):
    out = ingest(synthetic_raw, tmp_path / "out", image_size=448)  # 160x120 frames to 448x448
    found = codes(doctor_output(str(out)))
    assert {g.what.split("'")[1] for g in found["camera.upscaled"]} == {"front", "wrist"}


def test_rate_and_unusable_from_an_output(tmp_path):
    def tweak(i, t, state, action, meta):
        if i == 0:
            return t[:1], state[:1], action[:1], meta  # one sample: quarantined

    out = ingest(lowdim(tmp_path / "low", tweak), tmp_path / "out", fps=40)
    found = codes(doctor_output(str(out)))
    assert found["rate.duplicated"][0].count == 5 and found["episode.unusable"][0].examples[0][0] == "ep_000"


# -- the demo, ingest, card, stats, CLI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    """The demo's source (write_synthetic_dataset's defaults) and its ingest with default settings."""
    root = tmp_path_factory.mktemp("demo")
    write_synthetic_dataset(root / "raw")
    return root / "raw", ingest(root / "raw", root / "out")


def test_nothing_trips_on_the_demo(demo):
    raw, out = demo
    for report in (doctor_source(str(raw)), doctor_output(str(out))):
        assert report.groups == [] and report.ok, report.render()
        assert report.sampled == {"front": 8, "wrist": 8}


def test_ingest_writes_quality_json_and_summaries(demo):
    _, out = demo
    quality = json.loads((out / "meta" / "quality.json").read_text())
    assert quality["schema"] == "trajshard.quality" and quality["findings"] == []
    assert quality == json.loads(json.dumps(doctor_output(str(out)).to_json()))
    assert "## Data quality" in (out / "README.md").read_text()
    assert "data quality (trajshard doctor): errors 0, warnings 0, notes 0" in render_stats(stats_report(out))


def test_card_and_stats_list_the_findings(tmp_path):
    def tweak(i, t, state, action, meta):
        state[:, 2] = 0.25

    out = ingest(lowdim(tmp_path / "low", tweak), tmp_path / "out")
    line = "warning dims.constant: state: 1 of 4 dimensions are constant over the whole dataset (dims 2)"
    assert f"- {line}" in (out / "README.md").read_text()
    assert f"  {line}" in render_stats(stats_report(out))


def test_cli_exit_codes_and_json(demo, raw_copy, tmp_path):
    _, out = demo
    ok = CliRunner().invoke(main, ["doctor", str(out)])
    assert ok.exit_code == 0 and "errors 0, warnings 0, notes 0" in ok.output
    rewrite_front(raw_copy, "ep_001", lambda fr: [np.zeros_like(fr[0])] * len(fr))
    bad = CliRunner().invoke(main, ["doctor", str(raw_copy), "--json"])
    assert bad.exit_code == 1
    assert [f["code"] for f in json.loads(bad.output)["findings"]] == ["camera.dead"]
    rate = CliRunner().invoke(main, ["doctor", str(raw_copy), "--fps", "40"])
    assert "rate.duplicated" in rate.output
    gone = CliRunner().invoke(main, ["doctor", str(tmp_path / "nothing")])
    assert gone.exit_code == 2 and "could not run" in gone.output


def test_docs_list_every_check_with_its_severity():
    text = DOCS.read_text()
    for code, chk in CHECKS.items():
        assert f"| `{code}` | {chk.severity} |" in text, code


# -- the real datasets ----------------------------------------------------------------------------------


def test_bridge_image_3_is_dead():
    found = codes(doctor_source(str(shared_data("bridge_rlds"))))
    assert [g.what for g in found["camera.dead"]] == [
        "camera 'image_3' shows nothing: every frame looked at is flat black"
    ]
    assert found["camera.dead"][0].count == found["camera.dead"][0].of == 16


def test_gr00t_constant_dims_and_duplication_at_40_hz():
    root = str(shared_data("gr00t_pnp_lerobot_v20"))
    found = codes(doctor_source(root))
    assert "action: 25 of 44 dimensions are constant over the whole dataset" in [
        g.what for g in found["dims.constant"]
    ]
    assert "rate.duplicated" not in found
    fast = codes(doctor_source(root, JobConfig.from_flags(fps=40)))
    (group,) = fast["rate.duplicated"]
    assert group.what == "'action', 'ego_view', 'proprio' slower than the 40 Hz clock: samples repeat"
    assert group.count == group.of == 5


def test_g1_missing_videos_are_one_line(tmp_path):
    root = shared_data("g1_lerobot_v21")
    for report in (doctor_source(str(root)), doctor_output(str(ingest(root, tmp_path / "g1")))):
        (group,) = codes(report)["episode.unusable"]
        assert (group.count, group.of) == (94, 100)
        assert group.what == "camera 'observation.images.cam_high': the episode's video file is missing"
        assert sum(line.count("video file is missing") for line in report.render().splitlines()) == 1
