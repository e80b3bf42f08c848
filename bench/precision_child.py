"""ncnn CPU precision modes against fp32, per bundled model: PSNR on held-out photo crops and
time, one thread. `python bench/precision_child.py [SIZE]` prints one JSON line per model.

Modes: fp32 (exact), fp16 (ncnn's default options: fp16 storage/packed/arithmetic where the CPU
has them), bf16 (bf16 storage/packed, fp16 off).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODELS = ("realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesr-animevideov3-x4",
          "realesrgan-x4plus-anime", "realesrgan-x4plus")
PHOTOS = (("rocket.jpg", 200, 200), ("coffee.png", 150, 250), ("chelsea.png", 100, 150))


def crops(size: int, photos: tuple[tuple[str, int, int], ...] = PHOTOS) -> list[np.ndarray]:
    """(C,H,W) float crops in [0, 1] of scikit-image's photos: (file, top, left) each."""
    import skimage

    out = []
    for name, top, left in photos:
        with Image.open(Path(skimage.__file__).parent / "data" / name) as im:
            rgb = np.asarray(im.convert("RGB"))[top : top + size, left : left + size]
        out.append(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0)
    return out


def net_for(files, mode: str):
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = 1
    if mode != "fp16":
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
    if mode == "bf16":
        opt.use_bf16_storage = opt.use_bf16_packed = True
    net.load_param(str(files.param))
    net.load_model(str(files.bin))
    return net


def run(net, files, chw: np.ndarray) -> np.ndarray:
    import ncnn

    with net.create_extractor() as ex:
        ex.input(files.spec.input_blob, ncnn.Mat(chw))
        _, out = ex.extract(files.spec.output_blob)
        return np.clip(np.array(out), 0.0, 1.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def main(size: int) -> None:
    from realesr_portable.model.catalog import resolve_model

    images = crops(size)
    for model in MODELS:
        files = resolve_model(model)
        result: dict = {"model": model, "size": size}
        reference = None
        for mode in ("fp32", "fp16", "bf16"):
            net = net_for(files, mode)
            run(net, files, images[0][:, :16, :16])  # warm-up
            start = time.perf_counter()
            outs = [run(net, files, x) for x in images]
            result[f"{mode}_s"] = time.perf_counter() - start
            if reference is None:
                reference = outs
            else:
                result[f"{mode}_psnr_min"] = min(psnr(o, r) for o, r in zip(outs, reference))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
