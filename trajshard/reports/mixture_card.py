"""The dataset card (``OUT/README.md``) of a mixed output (``trajshard mix``)."""

from __future__ import annotations

from trajshard.reports.card import json_section


def mixture_card(info: dict, mixture: dict) -> str:
    c, layout = info["counts"], mixture["layout"]
    lines = [
        "# trajshard mixture",
        "",
        f"Made by trajshard {info['trajshard_version']} (shard sample v{info['shard_sample_version']}) with "
        f"`trajshard mix` from {len(mixture['datasets'])} datasets: {c['samples']} samples in {c['shards']} "
        "shards, in the loader's order of the mixture (one worker role, epoch 0).",
        "",
        f"- cameras (roles): {', '.join(layout['cameras']) or 'none'}, {layout['image_size']} px; "
        "`image_mask.npy` says which are real (a black image where a robot has no such camera)",
        f"- actions: {layout['action_width']}-D, state: {layout['state_width']}-D, padded with zeros; "
        "`action_mask.npy`, `state_mask.npy` mark each sample's own dimensions",
        f"- tokens: one {info['tokenizer']['type']} tokenizer ({info['tokenizer']['bins']} bins) fitted on the "
        "actions written, each dimension over the samples that have it (`meta/tokenizer.json`); each "
        "dataset's own tokenizer is in `meta/mixture.json`",
        "- provenance: `meta.json` `source` (dataset, key, episode, step) and `dataset_name`; an episode "
        "here is a block of consecutive samples, not a recording",
        "",
        "## Datasets",
        "",
        "| dataset | robot | weight | drawn | share | action dim | state dim | fps | cameras |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for d, lay in zip(mixture["datasets"], layout["datasets"], strict=True):
        cams = ", ".join(f"{role} = {cam}" for role, cam in lay["cameras"].items()) or "none"
        lines.append(
            f"| {d['name']} | {lay['embodiment']} | {d['weight']:.4g} | {d['drawn']} | {d['share']:.2%} "
            f"| {lay['action_dim']} | {lay['state_dim']} | {lay['fps']:g} | {cams} |"
        )
    lines += json_section("Options", mixture["options"])
    return "\n".join(lines)
