"""Ours (`Upscaler.upscale`, default options, automatic tile) vs ncnn's own whole-image run of the
same graph with the same options, side by side in one process (issue 16 item 2: ours within
1.1x on the CPU, 1.2x on lavapipe for animevideov3-x4 at 256x144).

`python bench/bench_vs_raw_ncnn.py [--x4plus] [--lavapipe]`: animevideov3-x4 256x144 on the CPU
always; `--x4plus` adds x4plus 256x256 on the CPU (~1 min a run on 2 cores); `--lavapipe` adds
animevideov3-x4 256x144 on lavapipe. After one warm-up the two alternate (`--runs`, 9 by default
for the small cases, 3 for x4plus); the table gives the medians and their ratio, and the ratio of
the fastest runs (on shared cores the fastest run is the one least disturbed).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_gpu import photo, run_raw_ncnn  # same folder: python puts it on sys.path


def ours(device, model: str, img):
    from realesr_portable.api import Upscaler

    up = Upscaler(model, gpu=device.index, backend="ncnn")
    return lambda: up.upscale(img)


def compare(device, model: str, width: int, height: int, runs: int) -> None:
    img = photo(width, height)
    fns = {"ours": ours(device, model, img), "raw ncnn": run_raw_ncnn(device, model, img)}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"| {model} {width}x{height} | {device.describe()} | {runs} | {med['ours']:.3f} | {med['raw ncnn']:.3f} | "
          f"{med['ours'] / med['raw ncnn']:.2f} | {best['ours'] / best['raw ncnn']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x4plus", action="store_true")
    parser.add_argument("--lavapipe", action="store_true")
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each side (x4plus: at most 3)")
    args = parser.parse_args()
    from realesr_portable.device.select import cpu_device, vulkan_devices

    print("| case | device | runs | ours s (median) | raw ncnn s (median) | ours / raw (medians) | ours / raw (fastest) |\n"
          "|---|---|---|---|---|---|---|")
    compare(cpu_device(), "realesr-animevideov3-x4", 256, 144, args.runs)
    if args.x4plus:
        compare(cpu_device(), "realesrgan-x4plus", 256, 256, min(args.runs, 3))
    if args.lavapipe:
        soft = [d for d in vulkan_devices() if d.is_software]
        if soft:
            compare(soft[0], "realesr-animevideov3-x4", 256, 144, args.runs)


if __name__ == "__main__":
    main()
