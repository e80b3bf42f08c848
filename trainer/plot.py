"""PNG plot of the training curves from the JSONL log, drawn with Pillow (no matplotlib needed).

One panel per quantity (losses, PSNR, SSIM, learning rate), iteration on the x axis. Noisy
training losses get a moving average line over the raw points so trends stay visible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from .validate import save_png

PANEL_W, PANEL_H, MARGIN = 360, 200, 44
SKIP_KEYS = {"iter", "kind", "time", "epoch", "iters_per_s", "unreadable"}


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


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, name: str, points: list[tuple[int, float]]) -> None:
    draw.rectangle([x0, y0, x0 + PANEL_W - 1, y0 + PANEL_H - 1], outline=(200, 200, 200))
    draw.text((x0 + 6, y0 + 4), name, fill=(0, 0, 0))
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(ys), max(ys)
    if hi == lo:
        lo, hi = lo - 1e-9 - abs(lo) * 0.01, hi + 1e-9 + abs(hi) * 0.01
    xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    left, top, right, bottom = x0 + MARGIN, y0 + 20, x0 + PANEL_W - 10, y0 + PANEL_H - 22

    def pos(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xmin) / (xmax - xmin) * (right - left), bottom - (y - lo) / (hi - lo) * (bottom - top))

    draw.text((x0 + 2, top - 4), f"{hi:.4g}", fill=(90, 90, 90))
    draw.text((x0 + 2, bottom - 8), f"{lo:.4g}", fill=(90, 90, 90))
    draw.text((left, bottom + 6), str(xmin), fill=(90, 90, 90))
    draw.text((right - 8 * len(str(xmax)), bottom + 6), str(xmax), fill=(90, 90, 90))
    raw = [pos(x, y) for x, y in points]
    if len(raw) == 1:
        draw.ellipse([raw[0][0] - 2, raw[0][1] - 2, raw[0][0] + 2, raw[0][1] + 2], fill=(30, 90, 200))
        return
    draw.line(raw, fill=(170, 190, 230), width=1)
    window = max(1, len(points) // 20)
    if window > 1:
        draw.line([pos(x, y) for x, y in zip(xs, _smooth(ys, window))], fill=(30, 90, 200), width=2)


def plot_curves(log_path: Path, out_path: Path) -> bool:
    """Draw every numeric series of `log_path` into `out_path`; False if there is nothing yet."""
    series = read_series(log_path)
    if not series:
        return False
    names = sorted(series, key=lambda k: (not k.startswith("l_"), k))
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    img = Image.new("RGB", (cols * PANEL_W, rows * PANEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        _panel(draw, (i % cols) * PANEL_W, (i // cols) * PANEL_H, name, series[name])
    save_png(img, out_path)
    return True
