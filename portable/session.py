"""One loaded ncnn net on one device, callable from several threads.

Each call builds its own extractor, so a `Session` carries no per-call state and threads may share
it (the GIL is released inside `extract`; see docs/architecture.md). ncnn's `Mat(ndarray)` does not copy, so the
input array is kept referenced until `extract` returns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .devices import Device
from .models import ModelFiles
from .ncnn_weights import NcnnFormatError, NcnnParam, read_weights
from .quiet import quiet_stderr


class ModelLoadError(UserError, ValueError):
    """The `.param`/`.bin` could not be loaded (missing, corrupt, or not matching each other)."""


class TileError(RuntimeError):
    """ncnn failed on one tile (typically out of memory); the tiler retries with a smaller tile."""


def _configure(opt, device: Device, fp32: bool, threads: int | None, low_memory: bool) -> None:
    opt.use_vulkan_compute = device.is_gpu
    opt.num_threads = max(1, threads or os.cpu_count() or 1)
    if low_memory:
        # ncnn's Winograd/im2col convolutions need ~17 KB of workspace per pixel of an RRDBNet
        # trunk and ~210 MiB more for transformed x4plus weights; direct convolution ~8.4 KB.
        # A trunk needs ~90 px of padding, so memory per pixel decides the usable tile size.
        opt.use_winograd_convolution = False
        opt.use_sgemm_convolution = False
    if fp32:  # fp16 storage/arithmetic cost ~58 dB PSNR: fine for images, not for parity.
        opt.use_fp16_packed = False
        opt.use_fp16_storage = False
        opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = False
        opt.use_bf16_packed = False


def validate_weights(param: Path, param_text: str, data: bytes) -> None:
    """Refuse a `.bin` whose size does not match its `.param` (ncnn accepts a too-long one silently)."""
    try:
        parsed = NcnnParam.parse(param_text)
    except NcnnFormatError as exc:
        raise ModelLoadError(f"{param}: {exc}") from None
    try:
        read_weights(parsed, data)
    except NcnnFormatError as exc:
        raise ModelLoadError(f"{param.with_suffix('.bin')}: {exc}") from None


HEAD_PAD = 4  # input pixels of context for head sub-tiles (the x4 head's receptive field is < 2)
HEAD_TILE = 48  # head sub-tile side: its 4x-resolution activations cost ~57 KB per input pixel


def find_split_blob(param_text: str, arch: str) -> str | None:
    """The blob where an RRDBNet's trunk (input resolution) hands over to its upsampling head.

    The trunk needs a huge receptive field but little memory per pixel; the head (nearest
    upsample + convs at 2x/4x) needs little context but most of the memory. Splitting there lets
    the trunk run on big padded tiles and the head on small ones. None when the graph differs.
    """
    if arch != "RRDBNet":
        return None
    layers = NcnnParam.parse(param_text).layers
    interp = next((layer for layer in layers if layer.type == "Interp"), None)
    if interp is None or len(interp.bottoms) != 1:
        return None
    blob = interp.bottoms[0]
    consumers = sum(layer.bottoms.count(blob) for layer in layers)
    return blob if consumers == 1 else None


class Session:
    """An ncnn net ready to run tiles: `run(CHW float32) -> CHW float32` on the model's scale."""

    def __init__(
        self,
        model: ModelFiles,
        device: Device,
        fp32: bool = False,
        threads: int | None = None,
        weights: bytes | None = None,
        split: bool = True,
    ) -> None:
        import ncnn

        self.model = model
        self.spec = model.spec
        self.device = device
        self.fp32 = fp32
        self._ncnn = ncnn
        try:
            param_text = model.param.read_text(encoding="utf-8")
            data = weights if weights is not None else model.bin.read_bytes()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{model.param}: cannot read model files ({exc})") from None
        split_blob = find_split_blob(param_text, self.spec.arch) if split else None
        self.low_memory = split_blob is not None and not device.is_gpu
        net = ncnn.Net()
        _configure(net.opt, device, fp32, threads, self.low_memory)
        if device.is_gpu:
            net.set_vulkan_device(device.index)
        validate_weights(model.param, param_text, data)
        with quiet_stderr():
            rc = net.load_param_mem(param_text)
        if rc != 0:
            raise ModelLoadError(f"{model.param}: not a valid ncnn .param file")
        if device.is_gpu and not net.opt.use_vulkan_compute:
            raise ModelLoadError(f"Vulkan device {device.index} ({device.name}) cannot run ncnn; use -g -1 for the CPU")
        # ncnn may reference the weight buffer without copying: keep it alive as long as the net.
        self._weights = data
        with quiet_stderr():
            rc = net.load_model_mem(data)
        if rc not in (0, None):
            raise ModelLoadError(f"{model.bin}: ncnn could not load the weights")
        if self.spec.input_blob not in net.input_names() or self.spec.output_blob not in net.output_names():
            raise ModelLoadError(
                f"{model.param}: blobs {self.spec.input_blob!r}/{self.spec.output_blob!r} from the model spec "
                f"are not in the .param (inputs {net.input_names()}, outputs {net.output_names()})"
            )
        self._net = net
        self.split_blob = split_blob

    def _extract(self, blob_in: str, data: np.ndarray, blob_out: str) -> np.ndarray:
        ncnn = self._ncnn
        data = np.ascontiguousarray(data, dtype=np.float32)  # float64/strided input is silently wrong.
        with self._net.create_extractor() as ex:
            ex.input(blob_in, ncnn.Mat(data))  # `data` stays referenced until extract returns
            rc, out = ex.extract(blob_out)
            if rc != 0:
                raise TileError(f"ncnn failed on a {data.shape[2]}x{data.shape[1]} tile (code {rc})")
            return np.array(out, dtype=np.float32, copy=True)

    def run_box(self, chw: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """Output of `box` = (top, left, height, width) of a padded tile: (C, height*s, width*s)."""
        top, left, height, width = box
        s = self.spec.scale
        if self.split_blob is None or min(top, left, chw.shape[1] - top - height, chw.shape[2] - left - width) < HEAD_PAD:
            return self.run(chw)[:, top * s : (top + height) * s, left * s : (left + width) * s]
        feat = self._extract(self.spec.input_blob, chw, self.split_blob)
        if feat.shape[1:] != chw.shape[1:]:  # not a trunk at input resolution: run it whole
            return self.run(chw)[:, top * s : (top + height) * s, left * s : (left + width) * s]
        out = np.empty((self.spec.out_channels, height * s, width * s), np.float32)
        p = HEAD_PAD
        for y in range(0, height, HEAD_TILE):
            for x in range(0, width, HEAD_TILE):
                th, tw = min(HEAD_TILE, height - y), min(HEAD_TILE, width - x)
                y0, x0 = top + y - p, left + x - p
                part = self._extract(self.split_blob, feat[:, y0 : y0 + th + 2 * p, x0 : x0 + tw + 2 * p],
                                     self.spec.output_blob)
                out[:, y * s : (y + th) * s, x * s : (x + tw) * s] = part[:, p * s : (p + th) * s, p * s : (p + tw) * s]
        return out

    def run(self, chw: np.ndarray) -> np.ndarray:
        """Run one tile. `chw`: (C,H,W) in the model's value range; returns (C,H*s,W*s) float32."""
        result = self._extract(self.spec.input_blob, chw, self.spec.output_blob)
        expected = (self.spec.out_channels, chw.shape[1] * self.spec.scale, chw.shape[2] * self.spec.scale)
        if result.shape != expected:
            raise ModelLoadError(
                f"{self.model.param}: output {result.shape} does not match the spec's scale x{self.spec.scale}"
            )
        return result
