"""``boltzpath report RUN… --out report.html``: one self-contained, offline page comparing runs.

Sections: the runs (target, method, energy evaluations, wall time, convergence warnings), a
metrics table (value, n and noise floor mean ± sd of every metric, one column per run),
cost–quality plots (each metric against target energy evaluations, one mark per run, log x axis,
the noise floor dashed), every run's figures, and the config keys that differ between runs.
Figures are PNG bytes inlined as base64 ``data:`` URIs; there is no script, stylesheet or font to
fetch, so the file opens anywhere without a network. Written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path
from typing import Any

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_text
from boltzpath.io.runs import RunDir

MAX_COST_PLOTS = 8

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.warn{color:#a40000}.floor{color:#777;font-size:.85em}
figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.8em;color:#555}
img{max-width:560px;border:1px solid #eee}img.wide{max-width:100%}
"""


class RunInfo:
    """What the report needs from one run folder (sample or PITA layout)."""

    def __init__(self, path: Path, label: str) -> None:
        rd = RunDir(path)
        if not path.is_dir():
            raise BadInput(f"no run folder at {path}")
        self.path, self.label = path, label
        self.config = rd.read_config()
        try:
            self.raw = rd.read_metrics()
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path / 'metrics.json'} is not valid JSON: {exc}") from None
        if not self.raw:
            raise BadInput(f"{path} has no metrics.json (an unfinished run? see its run.log)")
        self.complete = rd.is_complete
        evaluation = RunDir.final_evaluation(self.raw)
        self.metrics: dict[str, dict] = {k: v for k, v in (evaluation.get("metrics") or {}).items()
                                          if isinstance(v, dict) and "value" in v}
        ev = self.raw.get("energy_evaluations")
        self.evaluations = ev.get("total") if isinstance(ev, dict) else ev
        self.wall = self.raw.get("wall_time_s")
        self.method = self.raw.get("method") or self.config.get("method") or "?"
        target = self.config.get("target")
        self.target = target.get("name") if isinstance(target, dict) else target
        self.warnings = _warnings(self.raw)
        self.figures = sorted(path.glob("*.png"))


def _warnings(raw: dict) -> list[str]:
    from boltzpath.metrics.convergence import smc_warning

    out = []
    diag = raw.get("diagnostics")
    if isinstance(diag, dict) and diag.get("warning"):
        out.append(diag["warning"])
    w = smc_warning(raw)
    if w:
        out.append(w)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "—"
    return html.escape(str(v))


def _is_wide(data: bytes) -> bool:
    """A PNG more than twice as wide as tall (a row of panels, like PITA's ladder.png): shown at the
    page's width instead of a thumbnail. Width and height are the IHDR chunk's first two integers."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return height > 0 and width > 2 * height


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def floor_of(entry: dict) -> tuple[float | None, float | None]:
    """(mean, std) of a metric's noise floor, which is a number or {"mean", "std", ...}."""
    f = entry.get("noise_floor")
    if isinstance(f, dict):
        mean, std = f.get("mean"), f.get("std")
        return (float(mean) if isinstance(mean, int | float) else None,
                float(std) if isinstance(std, int | float) else None)
    return (float(f), None) if isinstance(f, int | float) else (None, None)


def runs_table(runs: list[RunInfo]) -> str:
    head = ("<tr><th class=l>run</th><th class=l>target</th><th class=l>method</th><th>energy evaluations"
            "</th><th>wall time (s)</th><th class=l>convergence</th></tr>")
    rows = []
    for r in runs:
        conv = "<br>".join(f"<span class=warn>{html.escape(w)}</span>" for w in r.warnings) or "no warning"
        if not r.complete:
            conv = "<span class=warn>unfinished run (no COMPLETE)</span><br>" + conv
        rows.append(f"<tr><td class=l>{html.escape(r.label)}</td><td class=l>{_fmt(r.target)}</td>"
                    f"<td class=l>{_fmt(r.method)}</td><td>{_fmt(r.evaluations)}</td><td>{_fmt(r.wall)}</td>"
                    f"<td class=l>{conv}</td></tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def metrics_table(runs: list[RunInfo]) -> str:
    """Rows: metrics; columns: runs. Each cell: value, n and the noise floor (mean ± sd)."""
    names = sorted({m for r in runs for m in r.metrics})
    if not names:
        return "<p>No metrics recorded.</p>"
    head = "<tr><th class=l>metric</th>" + "".join(f"<th>{html.escape(r.label)}</th>" for r in runs) + "</tr>"
    rows = []
    for n in names:
        cells = []
        for r in runs:
            m = r.metrics.get(n)
            if m is None:
                cells.append("<td>—</td>")
                continue
            mean, std = floor_of(m)
            floor = "" if mean is None else (f"<br><span class=floor>floor {_fmt(mean)}"
                                             + (f" ± {_fmt(std)}" if std is not None else "") + "</span>")
            cells.append(f"<td>{_fmt(m.get('value'))}<br><span class=floor>n={_fmt(m.get('n'))}</span>"
                         f"{floor}</td>")
        conv = next((r.metrics[n].get("convention") for r in runs if n in r.metrics
                     and r.metrics[n].get("convention")), None)
        title = f" title=\"{html.escape(str(conv))}\"" if conv else ""
        rows.append(f"<tr><td class=l{title}>{html.escape(n)}</td>" + "".join(cells) + "</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def cost_quality_png(runs: list[RunInfo]) -> bytes | None:
    """One panel per metric: value against energy evaluations, one labelled mark per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({m for r in runs for m, e in r.metrics.items()
                    if isinstance(e.get("value"), int | float) and r.evaluations})[:MAX_COST_PLOTS]
    if not names:
        return None
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.ravel(), names, strict=False):
        for i, r in enumerate(runs):
            m = r.metrics.get(name)
            if m is None or not isinstance(m.get("value"), int | float) or not r.evaluations:
                continue
            ax.scatter([r.evaluations], [m["value"]], color=f"C{i % 10}", label=r.label, zorder=3)
            ax.annotate(r.label, (r.evaluations, m["value"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
            floor, _ = floor_of(m)
            if floor is not None:
                ax.axhline(floor, color=f"C{i % 10}", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("target energy evaluations")
        ax.set_ylabel(name)
        ax.set_title(f"{name} (dashed: noise floor)", fontsize=9)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def config_diff(runs: list[RunInfo]) -> str:
    flat = [_flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    if not differ:
        return "<p>The runs' configs are identical.</p>" if len(runs) > 1 else "<p>One run.</p>"
    head = "<tr><th class=l>key</th>" + "".join(f"<th class=l>{html.escape(r.label)}</th>" for r in runs)
    rows = "".join("<tr><td class=l>" + html.escape(k) + "</td>"
                   + "".join(f"<td class=l>{_fmt(f.get(k, '(absent)'))}</td>" for f in flat) + "</tr>"
                   for k in differ)
    return "<table>" + head + "</tr>" + rows + "</table>"


def figures(runs: list[RunInfo]) -> str:
    parts = []
    for r in runs:
        if not r.figures:
            continue
        parts.append(f"<h3>{html.escape(r.label)}</h3>")
        for f in r.figures:
            data = f.read_bytes()
            wide = " class=wide" if _is_wide(data) else ""
            parts.append(f"<figure><img{wide} src=\"{_png_uri(data)}\" alt=\"{html.escape(f.name)}\">"
                         f"<figcaption>{html.escape(f.name)}</figcaption></figure>")
    return "".join(parts) or "<p>No figures.</p>"


def _labels(paths: list[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]


def render(run_dirs: list[str | Path]) -> str:
    paths = [Path(p) for p in run_dirs]
    runs = [RunInfo(p, label) for p, label in zip(paths, _labels(paths), strict=True)]
    cq = cost_quality_png(runs)
    cq_html = (f"<img src=\"{_png_uri(cq)}\" alt=\"cost-quality plots\" style=\"max-width:100%\">"
               if cq else "<p>No metric with energy evaluations to plot.</p>")
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
        f"<title>boltzpath report ({len(runs)} runs)</title><style>{CSS}</style></head><body>"
        f"<h1>boltzpath report: {len(runs)} run(s)</h1><p class=floor>generated {stamp}. Each metric: "
        "value, the number of samples n, and the reference-vs-reference noise floor at that n where "
        "measured (a value at or below its floor is as good as the reference can tell).</p>"
        f"<h2>Runs</h2>{runs_table(runs)}"
        f"<h2>Metrics</h2><p class=floor>Hover a metric's name for its convention.</p>{metrics_table(runs)}"
        f"<h2>Cost and quality</h2>{cq_html}"
        f"<h2>Config differences</h2>{config_diff(runs)}"
        f"<h2>Figures</h2>{figures(runs)}"
        "</body></html>\n"
    )


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise BadInput(f"--out must end in .html, got {out.name}")
    return atomic_write_text(out, render(run_dirs))
