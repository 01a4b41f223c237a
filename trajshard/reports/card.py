"""The generated dataset card, ``OUT/README.md``."""

from __future__ import annotations

import json
from collections import Counter

from trajshard.reports.summary import loss_lines, quality_lines, reason_kind
from trajshard.tokenizers.guards import guard_lines


def json_section(title: str, value: object) -> list[str]:
    """A card section that shows ``value`` as indented, key-sorted JSON."""
    return ["", f"## {title}", "", "```json", json.dumps(value, indent=2, sort_keys=True), "```", ""]


def dataset_card(
    info: dict,
    stats_streams: dict,
    quarantined: list,
    histogram_png: bool = False,
    guards: list[dict] = (),
    filtered: list = (),
    quality: dict | None = None,
) -> str:
    c = info["counts"]
    lines = [
        "# trajshard dataset",
        "",
        f"Made by trajshard {info['trajshard_version']} (shard sample v{info['shard_sample_version']}) "
        f"from a `{info['source']['format']}` source.",
        "",
        f"- episodes: {c['episodes_written']} written, {c['episodes_quarantined']} quarantined, "
        f"{c.get('episodes_filtered', 0)} filtered out, {c['episodes_input']} in the source",
        f"- samples: {c['samples']} in {c['shards']} shards, at {info['fps']} Hz",
        f"- cameras: {', '.join(info['cameras'])}",
        f"- embodiments: {', '.join(e or '(unset)' for e in info['embodiments'])}",
        f"- actions: {info['action_source']}",
        *[f"- note on the source: {n}" for n in info["source"].get("notes", [])],
        *[f"- left out: {n}" for n in loss_lines(info)],
        "",
        "Read it with `trajshard.loader.open_dataset`, or with webdataset and handlers that cannot unpickle",
        '(`.decode(wds.imagehandler("rgb8"), npy_json, pre=[], post=[])`, see trajshard\'s',
        "docs/shard-sample.md); decode `tokens.npy` with `meta/tokenizer.json` (`trajshard.tokenizers.decode`).",
        "Check it with `trajshard validate`, look at it with `trajshard histogram`.",
        "",
    ]
    lines += embodiment_lines(info)
    lines += [
        "## Action statistics",
        "",
        "| dim | name | min | q01 | mean | q99 | max | std |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    a = stats_streams["action"]
    names = a.get("names") or [""] * len(a["mean"])
    for d in range(len(a["mean"])):
        vals = " | ".join(f"{a[k][d]:.4g}" for k in ("min", "q01", "mean", "q99", "max", "std"))
        lines.append(f"| {d} | {names[d]} | {vals} |")
    if histogram_png:
        lines += [
            "",
            "## Action-bin histogram",
            "",
            "![action-bin occupancy per dimension](meta/histogram.png)",
        ]
    lines += ["", "## Tokenizer guards", ""]
    warn = guard_lines(list(guards))
    lines += (
        [f"- {g}" for g in warn] if warn else ["No action dimension is erased or clipped by the tokenizer."]
    )
    lines += ["", "## Quarantine", ""]
    if quarantined:
        by_reason = Counter(reason_kind(q.field, q.message) for q in quarantined)
        lines += [f"- {n} x {reason}" for reason, n in by_reason.most_common()]
        lines += ["", "Every rejected episode with its reason is in `meta/quarantine.jsonl`."]
    else:
        lines.append("No episode was quarantined.")
    if filtered:
        lines += ["", "## Filtered out", ""]
        lines += [f"- {n} x {reason}" for reason, n in Counter(q.message for q in filtered).most_common()]
        lines += [
            "",
            "Every episode the job's filters left out, with its reason, is in `meta/filtered.jsonl`.",
        ]
    lines += quality_section(quality)
    lines += json_section("Job config", info["config"])
    return "\n".join(lines)


def quality_section(quality: dict | None) -> list[str]:
    """The card's summary of meta/quality.json (none when the doctor did not run)."""
    if quality is None:
        return []
    c = quality["counts"]
    lines = [
        "",
        "## Data quality",
        "",
        f"`trajshard doctor` on this dataset: errors {c['error']}, warnings {c['warning']}, notes {c['info']} "
        "(every finding with examples is in `meta/quality.json`).",
    ]
    found = quality_lines(quality)
    return lines + ([""] + [f"- {line}" for line in found] if found else [])


def embodiment_lines(info: dict) -> list[str]:
    """The card's "Embodiment" section, from info.json ``embodiment`` and ``gripper`` (none for a
    dataset written before they existed)."""
    e = info.get("embodiment")
    if not e:
        return []
    space = e["action_space"]
    frame = f", in the {space['frame']} frame" if space.get("frame") else ""

    def layout(key: str) -> str:
        sl = e[key]
        return ", ".join(f"{k} [{a}:{b}]" for k, (a, b) in sl.items()) if sl else "not given"

    lines = [
        "## Embodiment",
        "",
        f"- robot: {e['name'] or '(not named)'}"
        + (f" (from the {e['name_from']})" if e["name_from"] else ""),
        f"- control rate: {e['control_rate']} Hz (samples at {info['fps']} Hz)",
        f"- actions: {space['kind']}, {space['mode']}{frame}; {e['action_dim']}-D, slices: {layout('action_layout')}",
        f"- state: {e['state_dim']}-D, slices: {layout('state_layout')}",
        "- cameras: "
        + (", ".join(f"{cam} = {role}" for cam, role in e["cameras"].items()) or "none")
        + (f"; intrinsics for {', '.join(e['intrinsics'])}" if e.get("intrinsics") else ""),
    ]
    g = info.get("gripper")
    if g:
        lines.append(
            f"- gripper: action dim {g['dim']} binarized, closed = {g['closed']}, open = {g['open']} "
            f"(closed when {g['closed_when']} {g['threshold']})"
        )
    return [*lines, ""]
