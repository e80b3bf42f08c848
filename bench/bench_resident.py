"""Device-resident segments (run/resident.py) against the host runner, side by side on one device.

`python bench/bench_resident.py [--library SO] [--runs N] [--json FILE]`. The library defaults to
$REALESR_PORTABLE_RESIDENT, else deploy/build/x86_64/librealesr_portable_resident.so. On a hardware
Vulkan GPU: x4plus 1024x1024 and animevideov3-x2 1920x1080 under a memory budget that forces
segments (a small GPU), and x4plus 512x512 at the default budget; without one, lavapipe with
small cases (its figures say nothing about a GPU's speed, only that the path holds). Runs
alternate between the two runners; prints median seconds, host/resident ratio, max difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench_gpu import hardware_gpu, photo, psnr

REPO = Path(__file__).resolve().parents[1]
# (label, model, width, height, tile (0: planned), --max-memory bytes or None)
GPU_CASES = [
    ("x4plus 512x512, default budget", "realesrgan-x4plus", 512, 512, 0, None),
    ("x4plus 1024x1024, 2 GiB budget", "realesrgan-x4plus", 1024, 1024, 0, 2 << 30),
    ("animevideov3-x2 1920x1080, 512 MiB budget", "realesr-animevideov3-x2", 1920, 1080, 0, 512 << 20),
]
LAVAPIPE_CASES = [
    ("x4plus-anime 64x64, tile 32", "realesrgan-x4plus-anime", 64, 64, 32, None),
    ("animevideov3-x4 256x144, tile 64", "realesr-animevideov3-x4", 256, 144, 64, None),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("REALESR_PORTABLE_RESIDENT") or REPO / "deploy/build/x86_64/librealesr_portable_resident.so"
    parser.add_argument("--library", type=Path, default=Path(default))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.library.is_file():
        print(f"bench_resident: no library at {args.library}; build it with deploy/build.sh")
        return 1
    from realesr_portable.device.select import vulkan_devices
    from realesr_portable.model.catalog import resolve_model
    from realesr_portable.run.engine import Engine, Options
    from realesr_portable.run.session import Session

    device = hardware_gpu()
    cases = GPU_CASES
    if device is None:
        device = next((d for d in vulkan_devices() if d.is_software), None)
        cases = LAVAPIPE_CASES
    if device is None:
        print("bench_resident: no Vulkan device (install mesa-vulkan-drivers for lavapipe)")
        return 1
    print(f"bench_resident: {device.describe()}")
    rows = []
    for label, model, width, height, tile, budget in cases:
        session = Session(resolve_model(model), device)
        engines = {"host": Engine([session], max_memory=budget),
                   "resident": Engine([session], max_memory=budget, resident=args.library)}
        img = photo(width, height)
        outs = {name: engine.run_model(img, Options(tile=tile)) for name, engine in engines.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.runs):
            for name, engine in engines.items():
                start = time.perf_counter()
                outs[name] = engine.run_model(img, Options(tile=tile))
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) for name, t in times.items()}
        row = {"case": label, "host s": round(med["host"], 3), "resident s": round(med["resident"], 3),
               "host / resident": round(med["host"] / med["resident"], 3),
               "max diff levels": int(np.abs(outs["host"].astype(int) - outs["resident"].astype(int)).max()),
               "psnr resident vs host": min(round(psnr(outs["resident"], outs["host"]), 2), 999.0)}  # 999: identical
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": device.describe(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
