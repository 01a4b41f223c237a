"""The HTML of the report: tables written here, charts and the episode browser drawn in the page by
``report.js`` with plotly.js, both inlined with the data, so the file opens with no server and no
network. The scripts come last, so the tables show while plotly.js (most of the file) compiles."""

from __future__ import annotations

import json
import re
from html import escape
from importlib import resources

from trajshard import __version__


def plotly_js() -> str:
    """plotly.js, minified, as the ``plotly`` package ships it (no download)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise RuntimeError(
            "trajshard report draws with plotly.js from the plotly package: pip install 'trajshard[report]'"
        ) from exc
    return get_plotlyjs()


def _asset(name: str) -> str:
    return resources.files("trajshard.reports.page").joinpath(name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it is inlined in (in JS and JSON strings, where these
    can occur, ``<\\/`` reads as ``</``)."""
    text = re.sub(r"</(?=script)", lambda _: "<\\/", text, flags=re.IGNORECASE)
    return text.replace("<!--", "<\\u0021--")


def _num(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}"


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_page(
    data: dict, info: dict, stats: dict, tok_doc: dict, quarantine: dict, filtered: dict, quality, facts
) -> bytes:
    c = info["counts"]
    title = f"trajshard report: {data['title']}"
    sections = [
        ("overview", "Overview", _overview(info, stats, tok_doc)),
        ("bins", "Action bins", _bins(data["bins"], tok_doc)),
        ("stats", "Statistics and alignment", _stats(stats, data)),
        ("problems", "Quarantine and findings", _problems(quarantine, filtered, quality, c)),
        ("episodes", "Episodes", _episodes(data, facts)),
        ("config", "Job config", f"<pre>{escape(json.dumps(info.get('config', {}), indent=1))}</pre>"),
    ]
    nav = "".join(f'<a href="#{k}">{escape(t)}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{escape(t)}</h2>{html}</section>' for k, t, html in sections)
    blob = _script_safe(json.dumps(data, separators=(",", ":"), allow_nan=False))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="trajshard {escape(__version__)}">
<title>{escape(title)}</title>
<style>{_asset("report.css")}</style>
</head><body>
<header><h1>{escape(title)}</h1>
<p>{c["episodes_written"]:,} episodes ({c.get("parts", c["episodes_written"]):,} parts), {c["samples"]:,} samples in
{c["shards"]:,} shards at {info["fps"]} Hz &middot; made by trajshard {escape(info["trajshard_version"])} from a
<code>{escape(info["source"]["format"])}</code> source &middot; report by trajshard {escape(__version__)}</p>
<nav>{nav}</nav>
{_about(data, facts, quality)}
</header>
<main>{body}</main>
<script id="report-data" type="application/json">{blob}</script>
<script>{_script_safe(plotly_js())}</script>
<script>{_script_safe(_asset("report.js"))}</script>
</body></html>
"""
    return page.encode("utf-8")


def _about(data: dict, facts, quality) -> str:
    b = data["budget"]
    bins = data["bins"]
    counted = (
        "every sample"
        if bins and bins["exact"]
        else f"{bins['samples']:,} of {bins['samples_total']:,} samples ({bins['shards']} of "
        f"{bins['shards_total']} shards, spread evenly over the manifest)"
        if bins
        else "nothing (no per-dimension bins)"
    )
    return f"""<details class="about" open><summary>What this page holds</summary><ul>
<li>Bin occupancy counted over {counted}; clip rate and round-trip error are exact, from
<code>meta/roundtrip.json</code> (every written step).</li>
<li>Statistics, alignment, the episode length and alignment-error histograms, the quarantine and
filter reasons: over every episode, from <code>meta/</code>.</li>
<li>Episode browser: {facts.episodes_embedded} of {facts.episodes_total:,} episodes (spread evenly over
the ids{", and some the doctor names" if quality else ""}), every step's state, action and tokens
(at most {b["curve_points"]} points per curve, {b["curve_values"]:,} numbers in all), {facts.frames_embedded:,} frames in all (at most
{b["max_frames"]:,}, spread evenly over each episode's steps; {b["frame_size"]} px JPEG). Other episodes
and full-size frames: <code>trajshard inspect OUT --episode ID</code>.</li>
<li>Doctor findings: {"from <code>meta/quality.json</code>" if quality else "none (the dataset has no <code>meta/quality.json</code>)"}.</li>
</ul></details>"""


def _overview(info: dict, stats: dict, tok_doc: dict) -> str:
    c = info["counts"]
    rows = [
        ["episodes in the source", _num(c["episodes_input"])],
        ["episodes written (parts)", f"{_num(c['episodes_written'])} ({_num(c.get('parts', 0))})"],
        ["episodes quarantined", _num(c["episodes_quarantined"])],
        ["episodes filtered out", _num(c.get("episodes_filtered", 0))],
        ["samples", _num(c["samples"])],
        ["shards", _num(c["shards"])],
        ["rate", f"{info['fps']} Hz"],
        ["cameras", escape(", ".join(info["cameras"]) or "none")],
        ["embodiments", escape(", ".join(e or "(unset)" for e in info.get("embodiments", [])))],
        ["actions", escape(info["action_source"])],
        [
            "tokenizer",
            escape(
                f"{tok_doc['type']} {tok_doc.get('mode') or ''}, {tok_doc['bins']} bins, tokens "
                f"{tok_doc['token_range']}"
            ),
        ],
        ["statistics", f"<code>{escape(stats['stats_hash'])}</code>"],
    ]
    splits = [
        [
            escape(name),
            _num(s["samples"]),
            _num(s["episodes"]),
            _num(s["shards"]),
            f"{s['episodes_per_shard_min']}–{s['episodes_per_shard_max']} (mean "
            f"{s['episodes_per_shard_mean']:.1f})",
        ]
        for name, s in stats["splits"].items()
    ]
    return _table(["", ""], rows, "kv") + _table(
        ["split", "samples", "episodes", "shards", "episodes per shard"], splits
    )


def _bins(bins: dict | None, tok_doc: dict) -> str:
    if not bins:
        return (
            "<p>The tokenizer is <code>fast</code>: its tokens are not per-dimension bins. The round-trip "
            "report is under Statistics.</p>"
            if tok_doc.get("type") == "fast"
            else "<p>No sample was written.</p>"
        )
    how = (
        f"every one of the {bins['samples']:,} samples"
        if bins["exact"]
        else f"{bins['samples']:,} of {bins['samples_total']:,} samples: the {bins['shards']} of "
        f"{bins['shards_total']} shards spread evenly over the manifest"
    )
    rows = [
        [
            d["dim"],
            escape(d["name"]),
            _num(d["used"]),
            _num(d["dead"]),
            f"{100 * d['edge_share']:.2f}",
            "—" if d["clip_rate"] is None else f"{100 * d['clip_rate']:.2f}",
            f"{d['entropy_bits']:.3f}",
            _num(d["rmse"]),
            _num(d["max_error"]),
            f'<span class="guard" title="{escape(d["guard_message"])}">{escape(d["guard"])}</span>',
        ]
        for d in bins["dims"]
    ]
    table = _table(
        ["dim", "name", "used", "dead", "edge %", "clip %", "H (bits)", "rmse", "max err", "guard"],
        rows,
        "num",
    )
    return f"""<p>Occupancy of each tokenizer bin per action dimension, counted over {how}. The x axis is
the action value: each bar spans its bin's interval; hover a bar for its count, token and the value it
decodes to. Edge bins (where clipped values land) are red, dead bins (never used) are ticks under
the axis. <em>edge %</em>: share in the first or last bin; <em>clip %</em>: share outside the
normalization bounds; <em>H</em>: entropy of the occupancy; <em>rmse</em>, <em>max err</em>:
<code>decode(tokens)</code> against the action over every written step.</p>
{table}<div id="bins-grid" class="grid"></div>"""


def _stats(stats: dict, data: dict) -> str:
    parts = []
    align = [
        [
            escape(s),
            _num(a["episodes"]),
            f"{1000 * a['max_dt_s']:.1f}",
            f"{1000 * a['median_max_dt_s']:.1f}",
            f"{1000 * a['p95_dt_s']:.1f}",
            _num(a["dropped_ticks"]),
            _num(a["gaps"]),
            f"{a['rate_hz_min']:.1f}–{a['rate_hz_max']:.1f}",
        ]
        for s, a in stats["alignment"].items()
    ]
    parts.append(
        "<h3>Alignment, per stream over every episode</h3>"
        "<p><em>max |dt|</em>: the worst episode's largest distance from a tick to the sample chosen "
        "for it; <em>median</em>: the median over episodes of that; <em>p95</em>: the largest "
        "per-episode 95th percentile.</p>"
        + _table(
            ["stream", "episodes", "max |dt| ms", "median ms", "p95 ms", "ticks dropped", "gaps", "rate Hz"],
            align,
            "num",
        )
    )
    parts.append(
        '<div class="grid2"><div id="dist-steps" class="plot"></div><div id="dist-align" class="plot"></div></div>'
    )
    rt = stats.get("roundtrip")
    if rt:
        rows = [
            [
                d["dim"],
                escape(d["name"]),
                _num(d["rmse"]),
                _num(d["max_error"]),
                _num(d["rmse_normalized"]),
                _num(d["max_error_normalized"]),
                f"{100 * d['clip_rate']:.2f}",
            ]
            for d in rt["dims"]
        ]
        tok = rt.get("tokens") or {}
        extra = (
            f" Tokens per step: mean {tok['mean_tokens']:.1f}, p99 {tok['p99_tokens']:.0f}." if tok else ""
        )
        parts.append(
            f"<h3>Round trip: decode(encode(action)) over {rt['count']:,} steps</h3><p>Decode failures: "
            f"{rt['decode_failures']}.{extra}</p>"
            + _table(["dim", "name", "rmse", "max err", "rmse norm", "max norm", "clip %"], rows, "num")
        )
    guards = stats["tokenizer"].get("guards") or []
    if guards:
        items = "".join(
            f"<li><b>{escape(str(g.get('kind')))}</b> dim {g.get('dim')} {escape(str(g.get('name', '')))}: "
            f"{escape(str(g.get('message', '')))} <i>{escape(str(g.get('fix', '')))}</i></li>"
            for g in guards
        )
        parts.append(f"<h3>Tokenizer guards</h3><ul>{items}</ul>")
    for stream, st in stats["streams"].items():
        names = data["names"].get(stream) or [f"dim {d}" for d in range(len(st["mean"]))]
        keys = ("min", "q01", "mean", "std", "q99", "max")
        rows = [[d, escape(names[d])] + [_num(st[k][d]) for k in keys] for d in range(len(st["mean"]))]
        parts.append(
            f'<details class="stream" {"open" if len(rows) <= 12 else ""}><summary><b>{escape(stream)}</b> '
            f"statistics: {len(rows)} dimensions, {st['count']:,} values each, quantiles "
            f"{escape(st['quantile_method'])}</summary>"
            + _table(["dim", "name", *keys], rows, "num")
            + "</details>"
        )
    return "".join(parts)


def _groups(records: dict, what: str, total: int) -> str:
    if not records["groups"]:
        return f"<p>No episode was {what}.</p>"
    blocks = []
    for g in records["groups"]:
        rows = [[escape(e["episode"]), escape(e["file"]), escape(e["reason"])] for e in g["examples"]]
        more = g["count"] - len(g["examples"])
        blocks.append(
            f'<details><summary><span class="count">{g["count"]:,}</span> {escape(g["kind"])}</summary>'
            + _table(["episode", "file", "reason"], rows)
            + (f"<p>and {more:,} more</p>" if more > 0 else "")
            + "</details>"
        )
    return f"<p>{records['total']:,} of {total:,} episodes, by reason (numbers masked as #):</p>" + "".join(
        blocks
    )


def _problems(quarantine: dict, filtered: dict, quality, counts: dict) -> str:
    total = counts["episodes_input"]
    parts = ["<h3>Quarantined</h3>", _groups(quarantine, "quarantined", total)]
    if filtered["present"]:
        parts += ["<h3>Filtered out by the job's filters</h3>", _groups(filtered, "filtered out", total)]
    if quality is not None:
        checked = quality["checked"]
        cnt = quality["counts"]
        parts.append(
            f"<h3>Doctor findings</h3><p>{_num(checked.get('episodes'))} episodes checked"
            + "".join(f", {_num(v)} {escape(k)}s" for k, v in cnt.items())
            + " (from <code>meta/quality.json</code>).</p>"
        )
        if not quality["findings"]:
            parts.append("<p>No finding.</p>")
        for f in quality["findings"]:
            of = f" of {f['of']:,}" if f.get("of") else ""
            rows = [
                [escape(str(e.get("where", ""))), escape(str(e.get("detail", "")))]
                for e in f.get("examples", [])
            ]
            parts.append(
                f'<details class="finding {escape(str(f.get("severity", "")))}"><summary>'
                f'<span class="sev">{escape(str(f.get("severity", "")))}</span> '
                f"<code>{escape(str(f.get('code', '')))}</code> {escape(str(f.get('message', '')))} "
                f'<span class="count">{_num(f.get("count"))}{of}</span></summary>'
                + (_table(["where", "detail"], rows) if rows else "")
                + "</details>"
            )
    return "".join(parts)


def _episodes(data: dict, facts) -> str:
    if not data["episodes"]:
        return "<p>No episode was written.</p>"
    options = "".join(
        f'<option value="{i}">{escape(e["id"])} ({e["steps"]} steps{", " + escape(e["split"]) if e["split"] else ""})</option>'
        for i, e in enumerate(data["episodes"])
    )
    return f"""<p>{facts.episodes_embedded} of {facts.episodes_total:,} episodes. Drag the slider (or use the arrow
keys on it) to scrub time: every camera's frame at that step (the nearest embedded one), the cursor on
the state, action and token curves, and the instruction in force. Shaded bands are the instruction
segments.</p>
<div class="controls"><label>episode <select id="episode-select">{options}</select></label>
<button id="play" type="button">play</button>
<input id="tick" type="range" min="0" max="0" value="0" step="1" aria-label="step">
<span id="tick-label"></span></div>
<div id="episode-facts" class="facts"></div>
<div id="segments" class="segments"></div>
<div id="instruction" class="instruction"></div>
<div id="frames" class="frames"></div>
<div id="plot-state" class="plot curve"></div>
<div id="plot-action" class="plot curve"></div>
<div id="plot-tokens" class="plot curve"></div>"""
