"""Python API: `Upscaler(model, gpu=..., tile=..., fp32=...).upscale(image)` or `Upscaler(options=UpscaleOptions(...))`.

The object holds only what is fixed at construction (loaded nets, options); every call works on
its own locals, so one `Upscaler` may be used from several threads at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .device.select import Device, select_devices
from .run.engine import Engine
from .run.options import UpscaleOptions
from .run.seams import global_layers, seam_note
from .image.io import Picture, split_modes
from .model.catalog import ModelFiles, is_weights_file, resolve_model
from .run.precision_probe import choose_precision, device_key, model_digest, remember_fp32
from .run.session import ModelLoadError, Session
from .run.tiler import NonFiniteOutputError
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

    `Upscaler("realesrgan-x4plus", gpu=-1, tile=256, ...)`: the keywords are `UpscaleOptions`'
    fields (run/options.py: gpu, backend, fp32, fp16_arith, threads, max_memory, dn, dn_model,
    value_range, torch_options, tile, outscale, tta, alpha, ...). `Upscaler(options=opts)` takes a
    whole record, as the command line, `--ray` and video build it.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, options: UpscaleOptions | None = None,
                 **fields: Any) -> None:
        self.options = o = UpscaleOptions.given(options, fields if model is None else {**fields, "model": model})
        self.notes: list[str] = []  # e.g. why `auto` fell back to ncnn
        self.backend = choose_backend(o.backend, o.gpu)
        sessions: list | None = None
        if is_weights_file(o.model):  # PyTorch weights: only the torch backend runs them
            if o.dn is not None:
                raise ValueError("--dn blends ncnn models; convert the weights first (realesr-portable convert)")
            if o.backend == "ncnn":
                resolve_model(o.model)  # its one-line error: run them with torch, or convert them
            files, sessions = load_torch_weights(Path(o.model), o.gpu, o.fp32, o.threads,
                                                 o.torch_options or TorchOptions())
            self.backend = "torch"
        else:
            files = resolve_model(o.model, scale=o.outscale)
        if o.value_range is not None:  # a foreign model's range, where neither graph nor sidecar say it
            files = replace(files, spec=replace(files.spec, value_range=o.value_range))
        weights = None if o.dn is None else blended_weights(files, o.dn_model, o.dn)  # type: ignore[arg-type]
        self._weights = weights
        self._reload = threading.Lock()
        self.model = files
        self.dn_model = None if o.dn_model is None else resolve_model(o.dn_model)
        if self.backend == "torch" and sessions is None:
            try:
                sessions = self._torch_sessions(o.fp32, need_gpu=o.backend == "auto")
            except BackendError as exc:
                if o.backend == "torch":
                    raise
                self.notes.append(f"{exc}; using ncnn")
                self.backend = "ncnn"
        if sessions is None:
            sessions = load_sessions(files, select_devices(o.gpu), o.fp32, o.threads, weights, self.notes, o.fp16_arith)
        self.devices = [session.device for session in sessions]
        self.description = describe_sessions(self.backend, sessions, o.fp32, o.fp16_arith)
        self.engine = Engine(sessions, max_memory=o.max_memory)  # type: ignore[arg-type] - bytes after __post_init__
        if self.engine.resident is not None:
            self.description += ", device-resident segments"
        seams = seam_note(self.engine, o)  # global layers in user-chosen tiles: measured
        if seams is not None:
            self.notes.append(seams)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    def release(self) -> None:
        """Give back the memory kept warm for the next image of the same size (an idle Upscaler
        otherwise holds one image's working memory until its next call)."""
        self.engine.release()

    def _torch_sessions(self, fp32: bool, need_gpu: bool) -> list:
        """The torch engine's sessions for this model: a `.pth` run directly, else the `.param` imported."""
        o = self.options
        if is_weights_file(o.model):
            return load_torch_weights(Path(o.model), o.gpu, fp32, o.threads, o.torch_options or TorchOptions())[1]
        return load_torch_sessions(self.model, o.gpu, fp32, o.threads, self._weights, o.torch_options or TorchOptions(),
                                   need_gpu=need_gpu)

    def _at_fp32(self, failed: Engine) -> str | None:
        """After NaN/inf from `failed` (this image's activations overflowed fp16, though an ncnn load
        probe passed): its sessions at reduced precision are rebuilt at fp32 (for ncnn on a GPU the
        verdict is cached, so later runs start at fp32), and the image is retried. None where nothing
        ran reduced (ncnn's CPU path is fp32: then the model itself is broken and the error stands)."""
        with self._reload:  # two images failing at once rebuild once; both retry on the new engine
            if self.engine is not failed:
                return f"{self.spec.name}: NaN/inf at reduced precision; running at fp32"
            o = self.options
            if self.backend == "torch":  # fp16 on CUDA by default; no probe at load, so nothing cached
                reduced = [s for s in failed.sessions if s.precision != "fp32"]
                if not reduced:
                    return None
                sessions = self._torch_sessions(True, need_gpu=False)
            else:
                reduced = [s for s in failed.sessions if isinstance(s, Session) and s.device.is_gpu and not s.fp32]
                if not reduced:
                    return None
                rebuilt = iter(load_sessions(self.model, [s.device for s in reduced], True, o.threads, self._weights))
                sessions = [next(rebuilt) if s in reduced else s for s in failed.sessions]
                for session in reduced:
                    remember_fp32(self.model, device_key(session.device), self._weights)
            failed.release()
            self.engine = Engine(sessions, max_memory=o.max_memory)  # type: ignore[arg-type]
            self.description = describe_sessions(self.backend, sessions, True)
            names = ", ".join(dict.fromkeys(s.device.name for s in reduced))
            return (f"{self.spec.name}: reduced precision on {names} gave NaN/inf on this image; "
                    "running at fp32 there from now on")

    @property
    def overlaps_calls(self) -> bool:
        """Whether two images in flight overlap one's transfers with the other's compute: a GPU
        engine that lets go of the GIL while it runs (torch, or the device-resident runner); the
        ncnn wheel's `extract` holds it."""
        if not self.devices[0].is_gpu:
            return False
        return self.backend == "torch" or self.engine.resident is not None

    def settings(self) -> dict:
        """Every setting that may change output pixels, by option name (a video's resume manifest):
        the options' pixel fields (run/options.py), with the model, `--dn-model`, the value range and
        the backend as resolved, and the devices (fp16 rounding differs between them)."""
        # tiles are exact for local graphs; a graph that reads the whole image (global pooling)
        # gives other pixels in other tiles or pieces, so there the tile and budget count too
        tiling = ({"-t": self.options.tile, "--max-memory": self.options.max_memory}
                  if global_layers(self.engine) else {})
        return {
            **self.options.manifest_settings(), **tiling,
            # the scale as run: no -s and -s equal to the model's give the same pixels (a resume
            # once refused `-s 2` after a run without -s on an x2 model)
            "-s": float(self.options.outscale if self.options.outscale is not None else self.spec.scale),
            "model": self.spec.name, "model files": model_digest(self.model), "model scale": self.spec.scale,
            "--dn-model": None if self.dn_model is None else model_digest(self.dn_model),
            "--value-range": list(self.spec.value_range), "--backend": self.backend,
            "device": [d.name if d.is_gpu else "cpu" for d in self.devices],
        }

    def upscale_picture(self, pic: Picture, progress=None) -> Picture:
        """The picture upscaled, with notes for the user (a refused precision, the seam bound of
        a global graph cut into pieces, measured on this picture)."""
        out = self._upscaled(pic, progress)
        seams = None if self.options.tile else seam_note(self.engine, self.options, pic.color)
        return out if seams is None else replace(out, notes=[*out.notes, seams])

    def _upscaled(self, pic: Picture, progress=None) -> Picture:
        """The picture upscaled; an image that overflows reduced precision is redone at fp32."""
        engine = self.engine
        try:
            out = engine.upscale_picture(pic, self.options, progress)
        except NonFiniteOutputError:
            note = self._at_fp32(engine)
            if note is None:
                raise
            out = self.engine.upscale_picture(pic, self.options, progress)
            out = replace(out, notes=[*out.notes, note])
        return out

    def upscale(self, image: np.ndarray | Image.Image) -> np.ndarray | Image.Image:
        """Upscale an (H,W), (H,W,1|2|3|4) array (uint8, uint16, or float in [0,1]) or a PIL image.

        Arrays come back with the same dtype and channel layout. PIL images come back in the mode
        that holds the result: L, LA, RGB, RGBA as given; 16-bit gray (I, I;16*) as I;16; 1 as L;
        palette as RGB/RGBA (an upscaled image no longer fits a palette); CMYK, YCbCr, LAB, HSV and
        RGBX as RGB; premultiplied RGBa/La as RGBA/LA. Float mode F is refused (use a float array).
        """
        if isinstance(image, (str, bytes, os.PathLike)):  # np.asarray would make it a 0-d array
            raise TypeError(f"upscale takes an array or a PIL image, got {type(image).__name__}; "
                            "read files with PIL.Image.open or upscale_many")
        if isinstance(image, Image.Image):
            if 0 in image.size:
                raise ValueError(f"empty image ({image.width}x{image.height})")
            return self._upscale_pil(image)
        array = np.asarray(image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"expected an (H,W) or (H,W,C) image with C in 1..4, got shape {array.shape}")
        if 0 in array.shape[:2]:  # once "range() arg 3 must not be zero" from the tiler
            raise ValueError(f"empty image ({array.shape[1]}x{array.shape[0]})")
        dtype = array.dtype
        work = array.astype(np.float32) if dtype.kind == "f" else array
        if work.dtype not in (np.uint8, np.uint16, np.float32):
            raise ValueError(f"unsupported dtype {dtype} (uint8, uint16 or float in [0,1])")
        if dtype.kind == "f" and not np.isfinite(work).all():  # else blamed on the model's arithmetic
            raise ValueError("the image holds NaN or inf values (float input must be in [0, 1])")
        if dtype.kind == "f" and (work.min() < 0.0 or work.max() > 1.0):  # 0..255 floats came back all white
            raise ValueError(f"float input must be in [0, 1]; this one spans {float(work.min()):g} to "
                             f"{float(work.max()):g} (divide 8-bit values by 255)")
        planes = work[..., None] if work.ndim == 2 else work
        has_alpha = planes.shape[2] in (2, 4)
        pic = Picture(planes[..., :-1] if has_alpha else planes, planes[..., -1] if has_alpha else None)
        out = self._upscaled(pic)  # an array carries no notes: no seam measurement per call (video frames)
        result = out.color if out.alpha is None else np.concatenate([out.color, out.alpha[..., None]], axis=2)
        if array.ndim == 2:
            result = result[..., 0]
        return result.astype(dtype, copy=False)

    def _upscale_pil(self, image: Image.Image) -> Image.Image:
        notes: list[str] = []
        color, alpha = split_modes(image, notes)
        out = self._upscaled(Picture(color, alpha))
        planes = out.color if out.alpha is None else np.concatenate([out.color, out.alpha[..., None]], axis=2)
        if planes.dtype == np.uint16:
            return Image.fromarray(planes[..., 0]) if planes.shape[2] == 1 else Image.fromarray(
                (planes >> 8).astype(np.uint8), {2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[2]]
            )
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[planes.shape[2]]
        return Image.fromarray(planes[..., 0] if planes.shape[2] == 1 else planes, mode)
