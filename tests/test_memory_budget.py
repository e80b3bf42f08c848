"""The memory budget: parsed from `--max-memory`, followed by the schedule, and peak RSS stays
within it (plus weights and image buffers) in a real child process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from realesr_portable.plan.budget import parse_memory, super_tile
from realesr_portable.cli import main

_CHILD = """
import json, resource, sys
import numpy as np
from realesr_portable.api import Upscaler
budget = sys.argv[1]
up = Upscaler("realesrgan-x4plus-anime", gpu=-1, max_memory=None if budget == "none" else budget)
src = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
up.upscale(src[:8, :8])  # warm up: libraries and weights resident
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = up.upscale(src)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before": before, "after": after, "shape": list(out.shape)}))
"""


@pytest.mark.parametrize("text,expected", [("512M", 512 << 20), ("2G", 2 << 30), ("1.5g", int(1.5 * (1 << 30))),
                                           ("800MiB", 800 << 20), (1 << 30, 1 << 30)])
def test_parse_memory(text, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "12Q", "1M", "-5G"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="max memory"):
        parse_memory(text)


def test_cli_refuses_a_bad_max_memory_in_one_line(tmp_path, capsys) -> None:
    from PIL import Image

    src = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(src)
    code = main(["-i", str(src), "-o", str(tmp_path / "b.png"), "-g", "-1", "--max-memory", "lots"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "max memory" in err
    assert not (tmp_path / "b.png").exists()


def test_super_tiles_only_when_the_features_do_not_fit() -> None:
    assert super_tile(100, 100, (0, 10, 0, 10), 88, 1000.0, 1 << 30) == 0
    side = super_tile(4000, 4000, (0, 10, 0, 10), 88, 1000.0, 256 << 20)
    assert 64 <= side < 4000 and (side + 2 * 88) ** 2 * 1000.0 <= (256 << 20) / 2 + 1


def _growth(budget: str) -> float:
    proc = subprocess.run([sys.executable, "-c", _CHILD, budget], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [256, 256, 3]
    return result["after"] - result["before"]


def test_peak_rss_stays_within_the_budget() -> None:
    assert _growth("128M") <= 128
    # the budget is what shaped that run: with plenty, the head runs in fewer, larger tiles
    from realesr_portable.api import Upscaler

    tiles = {}
    for budget in ("128M", "4G"):
        engine = Upscaler("realesrgan-x4plus-anime", gpu=-1, max_memory=budget).engine
        workers = engine.sessions[0].workers
        schedule = engine.sessions[0].segmenter.schedule(74, 74, engine.budget / 2 / workers, workers=workers)
        tiles[budget] = schedule[-1][1] or 74
    assert tiles["128M"] < tiles["4G"]
