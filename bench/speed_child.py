"""One measured run in its own process (so peak RSS is the whole process's): `python
bench/speed_child.py KIND MODEL SIZE THREADS [OPTION=VALUE ...]`, prints one JSON line.

KIND: `ours` (the runtime, default options), `ncnn` (ncnn's own untiled run of the whole net on
the image, no padding), `torch` (the project's torch architecture with the same weights, fp32,
untiled, 10 px reflect pre-pad right/bottom as RealESRGANer does).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo(size: int) -> np.ndarray:
    """A centred size x size crop of skimage's astronaut (resized up when size > 512)."""
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        rgb = im.convert("RGB")
        if size > 512:
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
        array = np.asarray(rgb)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return np.ascontiguousarray(array[top : top + size, left : left + size])


def run(kind: str, model: str, size: int, threads: int, options: dict[str, str]) -> dict:
    src = photo(size)
    if kind == "ours":
        from realesr_portable.api import Upscaler

        up = Upscaler(model, gpu=options.get("gpu", -1), threads=threads, fp32=options.get("fp32") == "1",
                      max_memory=options.get("max_memory"), tile=int(options.get("tile", 0)))
        loaded = _loaded()
        up.upscale(src)
    elif kind == "ncnn":
        import ncnn

        from realesr_portable.model.catalog import resolve_model

        files = resolve_model(model)
        net = ncnn.Net()
        net.opt.num_threads = threads
        if options.get("fp32") == "1":
            net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
        net.load_param(str(files.param))
        net.load_model(str(files.bin))
        loaded = _loaded()
        chw = np.ascontiguousarray(src.transpose(2, 0, 1), dtype=np.float32) / 255.0
        if options.get("pad") == "1":  # RealESRGANer's pre-pad, to tell the border's share of a gap
            chw = np.ascontiguousarray(np.pad(chw, ((0, 0), (0, 10), (0, 10)), mode="reflect"))
        with net.create_extractor() as ex:
            ex.input(files.spec.input_blob, ncnn.Mat(chw))
            rc, out = ex.extract(files.spec.output_blob)
            assert rc == 0 and np.array(out).shape[1] == chw.shape[1] * files.spec.scale
    else:
        import torch

        from realesr_portable.convert.detect import build_model
        from realesr_portable.convert.importer import import_ncnn
        from realesr_portable.model.catalog import resolve_model

        torch.set_num_threads(threads)
        files = resolve_model(model)
        info, state = import_ncnn(files.param, files.bin)
        net = build_model(info).eval()
        net.load_state_dict(state, strict=True)
        loaded = _loaded()
        x = torch.from_numpy(src.transpose(2, 0, 1).copy()).float().div(255.0)[None]
        x = torch.nn.functional.pad(x, (0, 10, 0, 10), mode="reflect")
        with torch.inference_mode():
            net(x)
    done = time.perf_counter()
    return {"kind": kind, "model": model, "size": size, "threads": threads, "options": options,
            "compute_s": done - loaded, "process_s": done - START, "cpu_s": _cpu() - CPU_AT_LOAD[0],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


START = time.perf_counter()
CPU_AT_LOAD = [0.0]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _loaded() -> float:
    """Mark the end of loading: compute time and CPU time count from here."""
    CPU_AT_LOAD[0] = _cpu()
    return time.perf_counter()
if __name__ == "__main__":
    kind, model, size, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = dict(arg.split("=", 1) for arg in sys.argv[5:])
    print(json.dumps(run(kind, model, size, threads, opts)))
