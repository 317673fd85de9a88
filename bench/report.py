"""The table (printed), its JSON and a PNG chart (``bench/results/``)."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .harness import Options, Row, median


def spread(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    mid, low, high = median(values), min(values), max(values)
    if len(values) == 1:
        return f"{mid:,.{digits}f}"
    return f"{mid:,.{digits}f} ({low:,.{digits}f}–{high:,.{digits}f})"  # noqa: RUF001


def table(rows: list[Row]) -> str:
    header = [
        "scenario",
        "rate",
        "p50 ms",
        "p99 ms",
        "ratio to baseline",
        "target",
        "met",
        "Redis cmds/req",
    ]
    lines = []
    for row in rows:
        ratio = row.ratio()
        ratios = row.ratios()
        ratio_text = "-"
        if ratio is not None:
            ratio_text = f"{ratio:.3f}"
            if len(ratios) > 1:
                ratio_text += f" ({min(ratios):.2f}–{max(ratios):.2f})"  # noqa: RUF001
        met = row.met()
        lines.append([
            row.scenario,
            f"{spread(row.figures('rate'), 0 if row.unit != 'jobs/s' else 1)} {row.unit}",
            spread(row.figures("p50_ms"), 2),
            spread(row.figures("p99_ms"), 2),
            ratio_text + (f" vs {row.baseline}" if row.baseline else ""),
            row.target or "-",
            {True: "yes", False: "NO", None: "-"}[met],
            spread(row.figures("commands"), 1),
        ])  # fmt: skip
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))

    out = [render(header), "-+-".join("-" * width for width in widths)]
    out += [render(line) for line in lines]
    notes = [f"  {row.scenario.strip()}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }


def write(rows: list[Row], options: Options, seconds: float) -> tuple[Path, Path | None]:
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    about = machine()
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": about,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
        "loader": "wrk" if (options.loader != "python" and shutil.which("wrk")) else "python",
        "seconds": round(seconds, 1),
        "rows": [row.as_dict() for row in rows],
    }
    json_path = out / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, default=str))
    shutil.copyfile(json_path, out / "latest.json")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return json_path, None  # no chart without matplotlib (pip install matplotlib)
    png_path = out / f"bench-{stamp}.png"
    chart(rows, png_path, about)
    shutil.copyfile(png_path, out / "latest.png")
    return json_path, png_path


def chart(rows: list[Row], path: Path, about: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [row for row in rows if row.ratio() is not None and not math.isnan(row.ratio() or 0)]
    figure, axis = plt.subplots(figsize=(11, 0.45 * max(4, len(compared)) + 1.5))
    try:
        labels = [row.scenario.strip() for row in compared][::-1]
        values = [row.ratio() or 0.0 for row in compared][::-1]
        colours = []
        for row in compared[::-1]:
            met = row.met()
            colours.append({True: "tab:green", False: "tab:red", None: "tab:gray"}[met])
        bars = axis.barh(labels, values, color=colours)
        for bar, row in zip(bars, compared[::-1], strict=True):
            ratios = row.ratios()
            if len(ratios) > 1:
                axis.plot([min(ratios), max(ratios)], [bar.get_y() + bar.get_height() / 2] * 2,
                          color="black", linewidth=1)  # fmt: skip
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                      f" {bar.get_width():.2f} ({row.target or 'ref'})",
                      va="center", fontsize=8)  # fmt: skip
        axis.axvline(1.0, color="black", linestyle=":", linewidth=1)
        axis.set_xlabel("ratio to baseline (rate; time for the engine row); whiskers: min-max")
        axis.set_title(
            f"flask-idms-webhooks benchmark — {about['nproc']} CPU, Python {about['python']}",
            fontsize=10,
        )
        axis.set_xlim(0, max([1.3, *[v * 1.25 for v in values]]))
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
