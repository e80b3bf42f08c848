#!/usr/bin/env python
"""End-to-end check: fine-tune an official ncnn model on photos and compare validation PSNR.

    python examples/finetune_official_on_photos.py OUT_DIR [--model realesrgan-x4plus-anime]
        [--iters 300] [--gt-size 96] [--batch 4] [--lr 1e-4]

The official ncnn weights are imported into PyTorch (convert/importer), trained with the
Real-ESRNet stage (L1 on the USM-sharpened GT, on-the-fly x4plus degradations) on photos from
the scikit-image wheel, validated on held-out photos (LQ made once with the same degradation
model and a fixed seed), and exported back to ncnn. Validation runs at iteration 0, so the
log holds the official model's PSNR/SSIM next to the fine-tuned one's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN = ("astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg",
         "brick.png", "camera.png", "grass.png", "gravel.png", "page.png", "ihc.png")
VAL = ("chelsea.png", "coffee.png")


def _photos(names: tuple[str, ...], out: Path) -> int:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in names:
        if not (data / name).is_file():
            continue
        with Image.open(data / name) as im:
            Image.fromarray(np.asarray(im.convert("RGB"))).save(out / f"{Path(name).stem}.png")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--model", default="realesrgan-x4plus-anime")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--gt-size", type=int, default=96)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    a = p.parse_args(argv)

    from realesr_portable.convert.importer import import_official
    from realesr_portable.trainer import config, loop

    info, _ = import_official(a.model)
    n_train = _photos(TRAIN, a.out / "train")
    n_val = _photos(VAL, a.out / "val")
    cfg = config.from_dict({
        "name": f"finetune_{a.model}",
        "scale": 4,
        "device": "auto",
        "network_g": {"type": info.name, **{k: v for k, v in info.params.items() if k not in ("scale", "upscale")}},
        "path": {"experiments_root": str(a.out / "experiments"), "pretrain_g": f"official:{a.model}"},
        "data": {"dataroot_gt": str(a.out / "train"), "gt_size": a.gt_size, "crop_size": 2 * a.gt_size,
                 "batch_size": a.batch, "num_workers": 2, "pool_size": 8 * a.batch},
        "train": {"stage": "esrnet", "total_iter": a.iters, "lr_g": a.lr, "milestones": [a.iters], "ema_decay": 0.99},
        "checkpoint": {"save_every": max(50, a.iters // 4), "keep_last": 2},
        "val": {"every": max(25, a.iters // 6), "dataroot_gt": str(a.out / "val"), "max_size": 192},
        "logging": {"print_every": 25},
        "export": {"at_end": True, "fp16": True, "name": f"{a.model}-photos"},
    })
    print(f"{n_train} training photos, {n_val} validation photos, model {a.model} ({info.params})", flush=True)
    result = loop.run(cfg)
    vals = [json.loads(line) for line in (cfg.run_dir / "log.jsonl").read_text().splitlines()]
    vals = [v for v in vals if v["kind"] == "val"]
    first, last = vals[0], vals[-1]
    print(f"validation PSNR-Y {first['psnr_y']:.3f} dB (iteration 0, official weights) -> "
          f"{last['psnr_y']:.3f} dB (iteration {last['iter']}); SSIM-Y {first['ssim_y']:.4f} -> {last['ssim_y']:.4f}")
    if result.export is not None:
        print(f"exported {result.export.param}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
