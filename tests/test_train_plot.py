"""Training curves (matplotlib: log-scale losses beside validation metrics) and TensorBoard events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from realesr_portable.trainer.logs import RunLog
from realesr_portable.trainer.plot import curves_figure, plot_curves, read_series


def _log(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    lines = [{"kind": "train", "iter": i, "l_pix": 0.5 / i, "l_g_gan": 0.1 + 0.001 * i, "lr": 1e-4, "iters_per_s": 3.0}
             for i in range(1, 61)]
    lines += [{"kind": "val", "iter": i, "psnr_y": 20 + i / 10, "ssim_y": 0.5 + i / 200, "niqe": 8 - i / 20} for i in (20, 40, 60)]
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines) + '{"iter": 61, "l_pix"')  # last line cut by a kill
    return path


def test_losses_are_log_scale_beside_validation_metrics(tmp_path: Path) -> None:
    series = read_series(_log(tmp_path))
    assert len(series["l_pix"]) == 60 and "iters_per_s" not in series
    fig = curves_figure(series)
    losses, *side = fig.axes
    assert losses.get_yscale() == "log" and losses.get_xlabel() == "iteration" and "loss" in losses.get_ylabel()
    assert [ax.get_ylabel() for ax in side] == ["PSNR-Y (dB)", "SSIM-Y", "NIQE (lower is better)", "learning rate"]
    assert all(ax.get_xlabel() == "iteration" for ax in side)
    out = tmp_path / "plots" / "curves.png"
    assert plot_curves(tmp_path / "log.jsonl", out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 600
    assert not plot_curves(tmp_path / "missing.jsonl", tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_tensorboard_events_when_asked(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path, tensorboard=True, stream=io.StringIO())
    for it in (1, 2, 3):
        log.record("train", it, {"l_pix": 1.0 / it})
    log.record("val", 3, {"psnr_y": 25.0})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [s.value for s in events.Scalars("train/l_pix")] == pytest.approx([1.0, 0.5, 1.0 / 3.0])
    assert events.Scalars("val/psnr_y")[0].step == 3


def test_log_lines_go_above_a_progress_bar(tmp_path: Path) -> None:
    """While the training bar is drawn, `info` lines go through its console, not around it."""
    import re

    from realesr_portable.cli.progress import make_progress

    screen = io.StringIO()
    bar = make_progress(screen, enabled=True)
    assert bar is not None and make_progress(io.StringIO(), enabled=False) is None
    log = RunLog(tmp_path, stream=io.StringIO())
    bar.start()
    task = bar.add_task("train", total=4)
    log.printer = lambda line: bar.console.print(line, markup=False, highlight=False)
    log.info("iter 1: l_pix [0.5]")
    bar.update(task, advance=1, refresh=True)
    bar.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "iter 1: l_pix [0.5]" in text and re.search(r"train .* 1/4 ", text) and "eta" in text
    assert log.stream.getvalue() == "" and "iter 1" in (tmp_path / "train.log").read_text()
