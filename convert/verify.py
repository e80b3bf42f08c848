"""Parity of an exported ncnn model with the PyTorch model it came from, on a real probe image.

Why two comparisons for fp16 files: PSNR alone (fp16 ncnn vs fp32 torch >= 45 dB) would let a
small graph mistake through, so the graph is also checked exactly: ncnn with fp16 storage and
arithmetic off runs the fp16-rounded weights, and torch runs the same rounded weights; those must
agree to 1e-4 like an fp32 export. The probe is a crop of a real photo (scikit-image's sample
data) when available, since flat synthetic inputs exercise too little of a super-resolution net.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..device.select import cpu_device
from ..model.catalog import ModelFiles
from ..graph.ncnn_files import NcnnParam, read_weights
from ..run.session import ModelLoadError, Session, TileError
from ..model.spec import ModelSpec
from .direct_writer import NcnnModel

FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR = 45.0
#: fp32 parity of modules from other packages (spandrel), judged on the image: see `check_parity`.
FOREIGN_FP32_MIN_PSNR = 60.0
_PHOTO = ("astronaut.png", 60, 180)  # file, top, left: a crop with skin, hair, fabric and edges

TorchForward = Callable[[torch.Tensor], torch.Tensor]


class VerificationError(UserError, RuntimeError):
    """ncnn and torch disagree beyond the parity thresholds (one-line message with the numbers)."""


@dataclass(frozen=True)
class Parity:
    """max_abs: exact-arithmetic ncnn vs torch on the same weights; psnr: as a user runs it vs fp32 torch."""

    max_abs: float
    psnr: float
    probe: str
    bound: str = ""  # the limits this result was held to, as the user reads them

    def describe(self) -> str:
        return f"max abs {self.max_abs:.3g}, PSNR {self.psnr:.2f} dB on {self.probe}"


def probe_image(size: int, width: int | None = None, channels: int = 3) -> tuple[np.ndarray, str]:
    """A (channels, size, width or size) float32 image in [0, 1]: a real photo crop, else a
    deterministic pattern. 1 channel is the luma of the RGB image; a 4th channel is a soft alpha ramp."""
    rgb, name = _rgb_probe(size, size if width is None else width)
    if channels == 3:
        return rgb, name
    if channels == 1:
        return np.ascontiguousarray(rgb.mean(axis=0, keepdims=True)), f"{name} (luma)"
    if channels == 4:
        alpha = np.linspace(0.2, 1.0, rgb.shape[2], dtype=np.float32)[None, None, :].repeat(rgb.shape[1], axis=1)
        return np.ascontiguousarray(np.concatenate([rgb, alpha])), f"{name} (+alpha)"
    raise VerificationError(f"no probe image for {channels}-channel models")


def _rgb_probe(size: int, width: int) -> tuple[np.ndarray, str]:
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "data" / _PHOTO[0]
        if path.is_file() and size <= 512 - _PHOTO[1] and width <= 512 - _PHOTO[2]:
            from PIL import Image

            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            top, left = _PHOTO[1:]
            crop = rgb[top : top + size, left : left + width].transpose(2, 0, 1)
            return np.ascontiguousarray(crop), f"{_PHOTO[0]} crop {width}x{size}"
    yy, xx = np.mgrid[0:size, 0:width].astype(np.float32) / max(size - 1, width - 1, 1)
    rings = 0.5 + 0.5 * np.sin(40.0 * ((xx - 0.4) ** 2 + (yy - 0.6) ** 2))
    edges = ((np.floor(xx * 6) + np.floor(yy * 5)) % 2).astype(np.float32)
    img = np.stack([xx * 0.8 + 0.1, 0.2 + 0.6 * rings, 0.15 + 0.7 * edges * yy])
    return np.ascontiguousarray(img, dtype=np.float32), f"synthetic pattern {width}x{size}"


class NcnnRunner:
    """An exported model loaded once into the runtime's own `Session` on the CPU, run on many inputs.

    Why the runtime's session: verification and pad measurement then run the path users run
    (same options, same blob checks, same output-shape check), not a second ncnn wrapper.
    `exact` turns fp16/bf16 storage and arithmetic off (fp32 throughout, for parity checks).
    One thread by default: the probes are small, and on a busy machine ncnn's OpenMP threads
    were measured 20x slower than one thread (each layer's barrier waits for a descheduled thread).
    """

    def __init__(self, model: NcnnModel, exact: bool, scale: int, channels: tuple[int, int] = (3, 3),
                 threads: int = 1) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="realesr-verify-")  # lives as long as the runner
        param = Path(self._folder.name) / "model.param"
        param.write_text(model.param_text, encoding="utf-8")
        spec = ModelSpec(name="verify", scale=scale, in_channels=channels[0], out_channels=channels[1],
                         input_blob=model.input_blob, output_blob=model.output_blob)
        files = ModelFiles(param, param.with_suffix(".bin"), spec, "path")
        try:
            self._session = Session(files, cpu_device(), fp32=exact, threads=threads, weights=model.bin_bytes)
        except ModelLoadError as err:
            raise VerificationError(f"ncnn refused the exported model: {err}") from None

    def __call__(self, chw: np.ndarray) -> np.ndarray:
        try:
            return self._session.run(np.ascontiguousarray(chw, dtype=np.float32))
        except (TileError, ModelLoadError) as err:
            raise VerificationError(f"ncnn failed to run the exported model: {err}") from None


def ncnn_forward(model: NcnnModel, chw: np.ndarray, exact: bool, scale: int,
                 channels: tuple[int, int] = (3, 3), threads: int = 1) -> np.ndarray:
    """One run of `model` on the CPU (see NcnnRunner)."""
    return NcnnRunner(model, exact, scale, channels, threads)(chw)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored after).

    Why: conversion work is small (a 32 px probe, weight copies); on a busy machine torch's
    second thread made an x4plus forward 20x slower (0.75 s -> 15 s), waiting at barriers.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_forward(forward: TorchForward, chw: np.ndarray) -> np.ndarray:
    with torch.no_grad(), one_torch_thread():
        # a copy: a module may work in place on its input (RCAN's `x *= rgb_range` turned the probe
        # the ncnn side then read into 255x itself, and a correct export was refused at 6 dB)
        return forward(torch.from_numpy(chw.copy()).unsqueeze(0))[0].float().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the images a user would see (both clipped to [0, 1]); inf when identical."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def with_stored_conv_weights(module: nn.Module, model: NcnnModel) -> nn.Module:
    """A copy whose conv kernels are exactly those the `.bin` stores (biases stay fp32, as stored).

    Read back rather than re-rounded because writers round differently: pnnx flushes fp16
    subnormals to zero and rounds some values away from nearest. Convolutions appear in the file
    in module order for these generators; if the layout does not line up, IEEE rounding is used.
    """
    copied = copy.deepcopy(module)
    kernels = [p for p in copied.parameters() if p.dim() == 4]
    param = NcnnParam.parse(model.param_text)
    arrays = read_weights(param, model.bin_bytes)
    stored = [arrays[layer.name][0] for layer in param.layers if layer.type == "Convolution"]
    aligned = len(stored) == len(kernels) and all(a.size == k.numel() for a, k in zip(stored, kernels))
    with torch.no_grad():
        for index, kernel in enumerate(kernels):
            if aligned:
                kernel.copy_(torch.from_numpy(stored[index]).reshape(kernel.shape))
            else:
                kernel.copy_(kernel.half().float())
    return copied


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise VerificationError(f"ncnn output shape {a.shape} differs from torch's {b.shape}")
    return float(np.abs(a - b).max())


def check_parity(module: nn.Module, model: NcnnModel, fp16: bool, probe_size: int,
                 post: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 exact_runner: NcnnRunner | None = None, channels: int = 3, foreign: bool = False) -> Parity:
    """Compare torch `module` (then `post`, e.g. a resize the graph appends) with ncnn `model`.

    `exact_runner`, an exact NcnnRunner of `model` the caller reuses afterwards, saves a load.

    Raises VerificationError when max abs >= 1e-4 (exact arithmetic) or, for fp16 weights, when
    the PSNR of ncnn's default (fp16) path vs fp32 torch is below 45 dB. `foreign` modules (from
    spandrel, exported by pnnx) are judged on the image alone: PSNR >= 60 dB for fp32 files and
    >= 45 dB for fp16 ones, since pnnx rewrites ops (LayerNorm, GELU, fused re-parameterised
    convolutions) whose arithmetic differs from torch's beyond 1e-4 and whose stored weights cannot
    be mapped back onto the module's parameters; `max_abs` is then exact ncnn vs fp32 torch.
    """
    chw, probe = probe_image(probe_size, channels=channels)
    module = module.eval().float()

    def forward_of(m: nn.Module) -> TorchForward:
        return (lambda x: post(m(x))) if post is not None else m

    reference = torch_forward(forward_of(module), chw)
    scale, shape = reference.shape[-1] // chw.shape[-1], (chw.shape[0], reference.shape[0])
    run_exact = exact_runner or NcnnRunner(model, exact=True, scale=scale, channels=shape)
    exact = run_exact(chw)
    if fp16:
        exact_ref = reference if foreign else torch_forward(forward_of(with_stored_conv_weights(module, model)), chw)
        max_abs = _max_abs(exact, exact_ref)
        quality = psnr(ncnn_forward(model, chw, exact=False, scale=scale, channels=shape), reference)
    else:
        max_abs = _max_abs(exact, reference)
        quality = psnr(exact, reference)
    if foreign:  # spandrel's modules: held to PSNR only
        limit = FP16_MIN_PSNR if fp16 else FOREIGN_FP32_MIN_PSNR
        result = Parity(max_abs, quality, probe, f"PSNR >= {limit:g} dB")
        if not quality >= limit:
            raise VerificationError(f"ncnn and torch disagree: {result.describe()} (limit PSNR >= {limit:g} dB)")
        return result
    result = Parity(max_abs, quality, probe,
                    f"max abs < {FP32_MAX_ABS:g}" + (f", PSNR >= {FP16_MIN_PSNR:g} dB" if fp16 else ""))
    if not max_abs < FP32_MAX_ABS:
        raise VerificationError(f"ncnn and torch disagree: {result.describe()} (limit max abs < {FP32_MAX_ABS:g})")
    if fp16 and not quality >= FP16_MIN_PSNR:
        raise VerificationError(f"fp16 model too far from fp32: {result.describe()} (limit PSNR >= {FP16_MIN_PSNR:g} dB)")
    return result
