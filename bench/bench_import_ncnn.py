"""Import of the official ncnn models: time per model, and full-tile parity for x4plus (slow).

Run explicitly: `.venv/bin/python -m pytest bench/bench_import_ncnn.py -m "slow or not slow"`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from PIL import Image

from realesr_portable.convert.detect import load_model
from realesr_portable.convert.importer import import_official, source_forward
from realesr_portable.device.select import cpu_device
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.session import Session

OFFICIAL = ["realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2",
            "realesr-animevideov3-x3", "realesr-animevideov3-x4"]


@pytest.mark.parametrize("name", OFFICIAL)
def test_import_time(benchmark, name: str) -> None:
    info, sd = benchmark.pedantic(import_official, args=(name,), rounds=3, iterations=1)
    benchmark.extra_info["tensors"] = len(sd)
    benchmark.extra_info["arch"] = f"{info.name} {info.params}"
    assert sd


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("realesrgan-x4plus", 64), ("realesrgan-x4plus-anime", 96),
                                        ("realesr-animevideov3-x3", 128)])
def test_full_tile_parity(benchmark, name: str, size: int) -> None:
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    with Image.open(photo) as im:
        hwc = np.asarray(im.convert("RGB"))[40 : 40 + size, 160 : 160 + size]
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32) / 255.0
    info, sd = import_official(name)
    _, model = load_model(sd)
    session = Session(resolve_model(name), cpu_device(), fp32=True)
    with torch.no_grad():
        ours = source_forward(info, model, torch.from_numpy(chw)[None])[0].numpy()
    theirs = benchmark.pedantic(session.run, args=(chw,), rounds=1, iterations=1)
    err = float(np.abs(ours - theirs).max())
    benchmark.extra_info["max_abs"] = err
    assert err < 1e-4, f"{name}: max abs {err:.2e}"
