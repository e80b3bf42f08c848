"""ncnn int8 on the CPU against fp32, per bundled model: quality (PSNR on held-out photos) and
speed. `python bench/int8_child.py [SIZE] [THREADS]` prints one JSON line per model.

How the int8 model is made (ncnn's post-training quantisation, done here without ncnn's C++
tools): every Convolution gets `8=1` (int8_scale_term) and, after its bias in the `.bin`, one
weight scale per output channel (127 / max |w| of that channel) and one scale for its input blob
(127 / the calibrated maximum of that blob). ncnn quantises the fp32 weights itself at load time
and runs int8 kernels (VNNI where the CPU has them), dequantising every output to float.

Calibration: the maximum of every convolution input over crops of photos that are not among the
held-out ones (`method=max`), or its 99.99th percentile (`method=pct`), which clips rare outliers
for finer steps everywhere else.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from precision_child import MODELS, crops, psnr, run  # noqa: E402

CALIBRATION = (("astronaut.png", 30, 180), ("motorcycle_left.png", 120, 300), ("brick.png", 0, 0),
               ("retina.jpg", 500, 500), ("horse.png", 100, 100))


def conv_inputs(param_text: str) -> dict[str, str]:
    """Convolution layer name -> the blob it reads."""
    from realesr_portable.graph.ncnn_files import NcnnParam

    return {layer.name: layer.bottoms[0] for layer in NcnnParam.parse(param_text).layers if layer.type == "Convolution"}


def blob_ranges(files, blobs: set[str], images: list[np.ndarray], method: str) -> dict[str, float]:
    """The calibrated magnitude of each blob over `images` (fp32, every blob kept: no lightmode)."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 2
    net.opt.lightmode = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.load_param(str(files.param))
    net.load_model(str(files.bin))
    found: dict[str, float] = {}
    for chw in images:
        with net.create_extractor() as ex:
            ex.input(files.spec.input_blob, ncnn.Mat(chw))
            for blob in blobs:
                _, mat = ex.extract(blob)
                values = np.abs(np.array(mat)).ravel()
                level = float(values.max()) if method == "max" else float(np.percentile(values, 99.99))
                found[blob] = max(found.get(blob, 0.0), level)
    return found


def int8_model(files, ranges: dict[str, float], folder: Path) -> tuple[Path, Path]:
    """Write the int8 `.param`/`.bin` pair for `files` with the calibrated input ranges."""
    from realesr_portable.graph.ncnn_files import NcnnParam, array_layout, read_weights

    text = files.param.read_text()
    param = NcnnParam.parse(text)
    weights = read_weights(param, files.bin.read_bytes())
    chunks: list[bytes] = []
    for layer in param.layers:
        arrays = weights.get(layer.name, [])
        if layer.type != "Convolution":
            for (_, tagged), array in zip(array_layout(layer), arrays):  # as read, in fp32
                chunks.append((b"\0" * 4 if tagged else b"") + array.astype("<f4").tobytes())
            continue
        weight = arrays[0]
        out = layer.int_param(0)
        chunks.append(b"\0" * 4 + weight.astype("<f4").tobytes())
        if layer.int_param(5):
            chunks.append(arrays[1].astype("<f4").tobytes())
        per_channel = np.abs(weight.reshape(out, -1)).max(axis=1)
        w_scales = np.where(per_channel > 0, 127.0 / np.maximum(per_channel, 1e-30), 0.0).astype("<f4")
        level = ranges[layer.bottoms[0]]
        chunks.append(w_scales.tobytes())
        chunks.append(np.array([127.0 / level if level > 0 else 1.0], "<f4").tobytes())
        layer.params["8"] = "1"
    pparam, pbin = folder / "int8.param", folder / "int8.bin"
    pparam.write_text(param.to_text())
    pbin.write_bytes(b"".join(chunks))
    return pparam, pbin


def load(param: Path, binary: Path, threads: int, int8: bool):
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.use_int8_inference = int8
    net.load_param(str(param))
    net.load_model(str(binary))
    return net


def main(size: int, threads: int) -> None:
    from realesr_portable.model.catalog import resolve_model

    held_out = crops(size)
    calibration = crops(64, CALIBRATION)
    for model in MODELS:
        files = resolve_model(model)
        inputs = conv_inputs(files.param.read_text())
        result: dict = {"model": model, "size": size, "threads": threads}
        fp32 = load(files.param, files.bin, threads, False)
        run(fp32, files, held_out[0][:, :16, :16])
        start = time.perf_counter()
        reference = [run(fp32, files, x) for x in held_out]
        result["fp32_s"] = time.perf_counter() - start
        for method in ("max", "pct"):
            ranges = blob_ranges(files, set(inputs.values()), calibration, method)
            with tempfile.TemporaryDirectory() as tmp:
                param, binary = int8_model(files, ranges, Path(tmp))
                net = load(param, binary, threads, True)
                run(net, files, held_out[0][:, :16, :16])
                start = time.perf_counter()
                outs = [run(net, files, x) for x in held_out]
                result[f"int8_{method}_s"] = time.perf_counter() - start
                result[f"int8_{method}_psnr_min"] = min(psnr(o, r) for o, r in zip(outs, reference))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
