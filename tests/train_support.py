"""Helpers for the trainer tests: tiny real-photo folders, a local VGG19 file, tiny configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "trainer" / "train.py"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")


def photo(name: str) -> np.ndarray:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / name) as im:
        return np.asarray(im.convert("RGB"))


def make_folder(folder: Path, size: int, offset: int = 40, names: tuple[str, ...] = PHOTOS, nested: bool = True) -> Path:
    """Crops of real photos as PNG (the last one in a subfolder, to exercise recursion)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img = photo(name)[offset : offset + size, offset : offset + size]
        target = folder / "sub" if nested and i == len(names) - 1 else folder
        target.mkdir(exist_ok=True)
        Image.fromarray(img).save(target / f"img{i}.png")
    return folder


def make_vgg_file(path: Path) -> Path:
    import torch

    from realesr_portable.trainer.vgg import random_vgg19_state

    torch.save(random_vgg19_state(0), path)
    return path


def tiny_config(root: Path, vgg: Path, stage: str = "esrgan", **sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict for a 2-block, 16-feature RRDBNet on 32 px patches (seconds per iteration on CPU)."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "scale": 4,
        "device": "cpu",
        "network_g": {"type": "RRDBNet", "num_feat": 16, "num_block": 2, "num_grow_ch": 8},
        "network_d": {"type": "UNetDiscriminatorSN", "num_feat": 8},
        "path": {"experiments_root": str(root / "exp"), "vgg_weights": str(vgg)},
        "data": {"dataroot_gt": str(root / "hr"), "gt_size": 32, "crop_size": 48, "batch_size": 2,
                 "num_workers": 0, "pool_size": 4},
        "train": {"stage": stage, "total_iter": 4, "lr_g": 5e-4, "lr_d": 5e-4, "milestones": [3],
                  "layer_weights": {"conv1_2": 0.1, "conv2_2": 0.1}},
        "checkpoint": {"save_every": 2, "keep_last": 2},
        "val": {"every": 0},
        "logging": {"print_every": 1},
        "export": {"at_end": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section] = {**cfg[section], **values}
        else:
            cfg[section] = values
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def script_env() -> dict[str, str]:
    """Environment for running train.py in a subprocess (quiet, single-threaded BLAS)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


def one_thread():
    """Generator for an autouse fixture: torch on one thread (CI cores are shared; spinning
    threads made tiny steps 10x slower), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fixed_batch() -> tuple[Any, Any, Any]:
    """(lq, gt, gt_usm) of two 32 px real-photo crops: a fixed batch for stage steps."""
    import torch

    gt = torch.from_numpy(photo("chelsea.png")[100:132, 200:264].copy()).permute(2, 0, 1).float().div(255)
    gt = torch.stack([gt[:, :, :32], gt[:, :, 32:]])
    lq = torch.nn.functional.interpolate(gt, scale_factor=0.25, mode="area")
    return lq, gt, (gt * 1.2 - 0.1).clamp(0, 1)
