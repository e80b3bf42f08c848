"""PNG plot of the training curves from the JSONL log, drawn with matplotlib.

Losses on the left, on a log scale (they fall over decades and a linear axis hides the late
trend), each as faint raw points plus a moving average; validation PSNR-Y (dB), SSIM-Y and NIQE
(lower is better) beside them, one small panel each, with the learning rate under them. Axes
are labelled with the quantity and its unit, iterations on x.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SKIP_KEYS = {"iter", "kind", "time", "epoch", "iters_per_s", "unreadable"}
#: Validation metrics and their axis labels, in panel order.
VALIDATION = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "niqe": "NIQE (lower is better)"}


def read_series(log_path: Path) -> dict[str, list[tuple[int, float]]]:
    """{quantity: [(iteration, value), ...]} from a JSONL log (later lines win on repeats)."""
    series: dict[str, dict[int, float]] = {}
    if not log_path.is_file():
        return {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        it = rec.get("iter")
        if not isinstance(it, int):
            continue
        for key, value in rec.items():
            if key in SKIP_KEYS or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            series.setdefault(key, {})[it] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def _smooth(values: list[float], n: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc / min(i + 1, n))
    return out


def _losses(ax, series: dict[str, list[tuple[int, float]]]) -> None:
    names = sorted(k for k in series if k.startswith("l_"))
    for index, name in enumerate(names):
        xs, ys = zip(*series[name])
        colour = f"C{index % 10}"
        window = max(1, len(ys) // 20)
        ax.plot(xs, ys, color=colour, alpha=0.25 if window > 1 else 1.0, linewidth=0.8,
                marker="o" if len(ys) == 1 else None, label=None if window > 1 else name)
        if window > 1:
            ax.plot(xs, _smooth(list(ys), window), color=colour, linewidth=1.6, label=f"{name} (mean of {window})")
    if any(y > 0 for name in names for _, y in series[name]):
        ax.set_yscale("log")
    ax.set_title("training losses")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (log scale)")
    if names:
        ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)


def _metric(ax, points: list[tuple[int, float]], label: str) -> None:
    xs, ys = zip(*points)
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2)
    ax.set_ylabel(label)
    ax.set_xlabel("iteration")
    ax.grid(True, alpha=0.3)


def curves_figure(series: dict[str, list[tuple[int, float]]]) -> Figure:
    """The figure for `series` (see the module docstring); no global pyplot state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    side = [(VALIDATION[k], series[k]) for k in VALIDATION if k in series]
    if "lr" in series:
        side.append(("learning rate", series["lr"]))
    rows = max(1, len(side))
    fig = Figure(figsize=(11, max(4.0, 2.2 * rows)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2, width_ratios=(3, 2))
    _losses(fig.add_subplot(grid[:, 0]), series)
    for row, (label, points) in enumerate(side):
        _metric(fig.add_subplot(grid[row, 1]), points, label)
    return fig


def plot_curves(log_path: Path, out_path: Path) -> bool:
    """Draw the losses and validation metrics of `log_path` into `out_path`; False if nothing yet."""
    series = read_series(log_path)
    if not series:
        return False
    fig = curves_figure(series)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    return True
