"""Python API: `Upscaler(model=..., gpu=..., tile=..., fp32=...).upscale(image)`.

The object holds only what is fixed at construction (loaded nets, options); every call works on
its own locals, so one `Upscaler` may be used from several threads at once.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from .plan.budget import parse_memory
from .device.select import Device, select_devices
from .run.engine import Engine, Options
from .run.seams import seam_note
from .image.io import Picture, split_modes
from .model.catalog import DEFAULT_MODEL, ModelFiles, is_weights_file, resolve_model
from .run.precision_probe import choose_precision, device_key, model_digest
from .run.session import ModelLoadError, Session
from .model.spec import ModelSpec
from .run.backend import (BackendError, TorchOptions, choose_backend, describe_sessions, load_torch_sessions,
                          load_torch_weights)
from .video import upscale_video  # noqa: F401 - the video API beside Upscaler; PyAV loads only when called


def blended_weights(model: ModelFiles, twin: str | os.PathLike[str], dn: float) -> bytes:
    """Denoise-strength weights: w = dn*model + (1-dn)*twin, both `.bin` files of one graph."""
    from .graph.ncnn_files import NcnnFormatError, blend_bins

    twin_files = resolve_model(twin)
    try:
        return blend_bins(model.param.read_text(encoding="utf-8"), model.bin.read_bytes(), twin_files.bin.read_bytes(), dn)
    except (NcnnFormatError, ValueError) as exc:
        raise ModelLoadError(f"{twin_files.bin}: cannot blend with {model.bin.name} ({exc})") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read weights for --dn ({exc})") from None


def load_sessions(
    model: ModelFiles, devices: list[Device], fp32: bool, threads: int | None, weights: bytes | None,
    notes: list[str] | None = None, fp16_arith: bool = False,
) -> list[Session]:
    """One session per device; without --fp32, each device's reduced precision is kept only where
    a probe run measured it close to fp32 for this model (run/precision_probe.py)."""
    sessions = []
    for device in devices:
        session = Session(model, device, fp32=fp32, threads=threads, weights=weights, fp16_arith=fp16_arith)
        if not fp32:
            verdict = choose_precision(
                model, device_key(device), session.run,
                lambda: Session(model, device, fp32=True, threads=threads, weights=weights).run, weights)
            if verdict.force_fp32:
                session = Session(model, device, fp32=True, threads=threads, weights=weights)
                if notes is not None:
                    notes.append(verdict.note(model.spec.name, device.name))
        sessions.append(session)
    return sessions


class Upscaler:
    """Upscale numpy arrays or PIL images with an ncnn model on a Vulkan GPU or the CPU (or in PyTorch).

    Args:
        model: a model name (`realesrgan-x4plus`, ...) or a `.param` path with its `.bin`/`.json`.
        gpu: None/"auto" (hardware Vulkan, else CPU), -1 (CPU), an index, or "0,1" to share tiles.
        tile: tile side in input pixels; 0 chooses from the device's memory and speed.
        fp32: force fp32 (default: fp16 storage with fp32 arithmetic on Vulkan, fp32 on the CPU).
        fp16_arith: fp16 arithmetic on Vulkan (opt-in: cost animevideov3 ~34 dB on an NVIDIA H200;
            see device/precision.py).
        outscale: final scale (1..16); None keeps the model's own scale.
        tta: average the 8 flips/rotations (8x slower).
        alpha: "bicubic" (default) or "model" for the alpha channel.
        threads: CPU threads for ncnn (default: all cores).
        dn, dn_model: denoise strength in [0, 1] blending this model's weights with `dn_model`'s.
        max_memory: memory budget for features and tiles, bytes or a size like "512M"/"2G"
            (default: a share of the device's available memory, see budget.py).
        backend: "ncnn", "torch" (the same model in PyTorch; `gpu` is then a CUDA/ROCm index)
            or "auto" (torch where PyTorch sees a GPU and can map the model, else ncnn).
        torch_options: the torch engine's speed switches (precision, channels_last, CUDA graphs, ...).
        value_range: the pixel range the model expects, e.g. (0, 255); default: its sidecar's, else (0, 1).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        gpu: str | int | None = None,
        tile: int = 0,
        fp32: bool = False,
        outscale: float | None = None,
        tta: bool = False,
        alpha: str = "bicubic",
        threads: int | None = None,
        dn: float | None = None,
        dn_model: str | os.PathLike[str] | None = None,
        max_memory: int | str | None = None,
        backend: str = "auto",
        torch_options: TorchOptions | None = None,
        value_range: tuple[float, float] | None = None,
        fp16_arith: bool = False,
    ) -> None:
        self.options = Options(tile=tile, outscale=outscale, tta=tta, alpha=alpha)
        budget = None if max_memory is None else parse_memory(max_memory)
        self.notes: list[str] = []  # e.g. why `auto` fell back to ncnn
        self.backend = choose_backend(backend, gpu)
        sessions: list | None = None
        if is_weights_file(model):  # PyTorch weights: only the torch backend runs them
            if dn is not None:
                raise ValueError("--dn blends ncnn models; convert the weights first (realesr-portable convert)")
            if backend == "ncnn":
                resolve_model(model)  # its one-line error: run them with torch, or convert them
            files, sessions = load_torch_weights(Path(model), gpu, fp32, threads, torch_options or TorchOptions())
            self.backend = "torch"
        else:
            files = resolve_model(model, scale=outscale)
        if value_range is not None:  # a foreign model's range, where neither graph nor sidecar say it
            files = replace(files, spec=replace(files.spec, value_range=(float(value_range[0]), float(value_range[1]))))
        weights = None
        if dn is not None:
            if dn_model is None:
                raise ValueError("dn needs dn_model (the twin model's .param path or name)")
            weights = blended_weights(files, dn_model, dn)
        self.model = files
        self.fp32, self.dn, self.fp16_arith = fp32, dn, fp16_arith
        self.dn_model = None if dn is None else resolve_model(dn_model)  # type: ignore[arg-type]
        if self.backend == "torch" and sessions is None:
            try:
                sessions = load_torch_sessions(files, gpu, fp32, threads, weights, torch_options or TorchOptions(),
                                               need_gpu=backend == "auto")
            except BackendError as exc:
                if backend == "torch":
                    raise
                self.notes.append(f"{exc}; using ncnn")
                self.backend = "ncnn"
        if sessions is None:
            sessions = load_sessions(files, select_devices(gpu), fp32, threads, weights, self.notes, fp16_arith)
        self.devices = [session.device for session in sessions]
        self.description = describe_sessions(self.backend, sessions, fp32, fp16_arith)
        self.engine = Engine(sessions, max_memory=budget)
        seams = seam_note(self.engine, self.options)  # global layers in user-chosen tiles: measured
        if seams is not None:
            self.notes.append(seams)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    def pixel_settings(self) -> dict:
        """Every setting that changes output pixels, by option name (a video's resume manifest):
        the model files' content, scales, --dn and its twin, --fp32, TTA, alpha mode, the backend and the devices
        (fp16 rounding differs between them). The tile size is left out: tiling is exact."""
        return {
            "model": self.spec.name, "model files": model_digest(self.model), "model scale": self.spec.scale,
            "-s": self.options.outscale, "--dn": self.dn,
            "--dn-model": None if self.dn_model is None else model_digest(self.dn_model),
            "--fp32": self.fp32, "--fp16-arith": self.fp16_arith, "--value-range": list(self.spec.value_range), "--tta": self.options.tta, "--alpha": self.options.alpha, "--backend": self.backend,
            "device": [d.name if d.is_gpu else "cpu" for d in self.devices],
        }

    def upscale_picture(self, pic: Picture, progress=None) -> Picture:
        return self.engine.upscale_picture(pic, self.options, progress)

    def upscale(self, image: np.ndarray | Image.Image) -> np.ndarray | Image.Image:
        """Upscale an (H,W), (H,W,1|2|3|4) array (uint8, uint16, or float in [0,1]) or a PIL image.

        Arrays come back with the same dtype and channel layout; PIL images as the same mode (palette
        images as RGB/RGBA, since an upscaled image no longer fits a palette).
        """
        if isinstance(image, Image.Image):
            return self._upscale_pil(image)
        array = np.asarray(image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"expected an (H,W) or (H,W,C) image with C in 1..4, got shape {array.shape}")
        dtype = array.dtype
        work = array.astype(np.float32) if dtype.kind == "f" else array
        if work.dtype not in (np.uint8, np.uint16, np.float32):
            raise ValueError(f"unsupported dtype {dtype} (uint8, uint16 or float in [0,1])")
        planes = work[..., None] if work.ndim == 2 else work
        has_alpha = planes.shape[2] in (2, 4)
        pic = Picture(planes[..., :-1] if has_alpha else planes, planes[..., -1] if has_alpha else None)
        out = self.upscale_picture(pic)
        result = out.color if out.alpha is None else np.concatenate([out.color, out.alpha[..., None]], axis=2)
        if array.ndim == 2:
            result = result[..., 0]
        return result.astype(dtype, copy=False)

    def _upscale_pil(self, image: Image.Image) -> Image.Image:
        notes: list[str] = []
        color, alpha = split_modes(image, notes)
        out = self.upscale_picture(Picture(color, alpha))
        planes = out.color if out.alpha is None else np.concatenate([out.color, out.alpha[..., None]], axis=2)
        if planes.dtype == np.uint16:
            return Image.fromarray(planes[..., 0]) if planes.shape[2] == 1 else Image.fromarray(
                (planes >> 8).astype(np.uint8), {2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[2]]
            )
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[2]]
        return Image.fromarray(planes[..., 0] if planes.shape[2] == 1 else planes, mode)
