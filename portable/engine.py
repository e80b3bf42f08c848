"""Upscaling one picture: channels adapted to the model, tiles through the sessions, alpha,
outscale. Stateless per call, so one `Engine` serves many threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .autotile import auto_tile, balanced
from .imageio import Picture
from .scale import resize, resize_plane, target_size
from .session import Session
from .tiler import Box, Runner, TileJob, upscale_tiled
from .tta import tta_runner

ALPHA_MODES = ("bicubic", "model")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Options:
    """Per-run choices. `tile=0`: automatic; `outscale=None`: the model's own scale."""

    tile: int = 0
    outscale: float | None = None
    tta: bool = False
    alpha: str = "bicubic"

    def __post_init__(self) -> None:
        if self.tile < 0:
            raise ValueError(f"tile must be >= 0, got {self.tile}")
        if self.outscale is not None and not 1.0 <= self.outscale <= 16.0:
            raise ValueError(f"outscale must be between 1 and 16, got {self.outscale}")
        if self.alpha not in ALPHA_MODES:
            raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {self.alpha!r}")


def _adapt(run: Runner, channels: int, model_in: int, model_out: int) -> Runner:
    """Feed a 1- or 3-channel image to a 1- or 3-channel model and return the image's channels."""
    if channels == model_in == model_out:
        return run

    def adapted(chw: np.ndarray, box: Box) -> np.ndarray:
        x = chw
        if channels == 1 and model_in == 3:
            x = np.repeat(chw, 3, axis=0)
        elif channels == 3 and model_in == 1:
            x = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), chw, axes=1)[None]
        y = run(x, box)
        if channels == 1 and y.shape[0] == 3:
            return y.mean(axis=0, keepdims=True)
        if channels == 3 and y.shape[0] == 1:
            return np.repeat(y, 3, axis=0)
        return y

    return adapted


class Engine:
    """Runs a model over whole pictures using one or more sessions (devices) in parallel."""

    def __init__(self, sessions: Sequence[Session]) -> None:
        if not sessions:
            raise ValueError("at least one session is needed")
        self.sessions = list(sessions)
        self.spec = sessions[0].spec

    def tile_size(self, options: Options, shape: tuple[int, int] | None = None) -> int:
        """`-t` as given, or the automatic tile (balanced over `shape` = (height, width))."""
        if options.tile:
            return options.tile
        tile = min(auto_tile(self.spec, session.device) for session in self.sessions)
        return balanced(tile, *shape) if shape else tile

    def run_model(self, src: np.ndarray, options: Options, progress: Progress | None = None) -> np.ndarray:
        """(H,W,C) uint8/uint16/float32 -> (H*s,W*s,C), same dtype, at the model's own scale."""
        if src.ndim == 2:
            return self.run_model(src[..., None], options, progress)[..., 0]
        h, w, c = src.shape
        s = self.spec.scale
        out = np.empty((h * s, w * s, c), dtype=src.dtype)
        maximum = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(src.dtype, 1.0)
        job = TileJob(src, out, s, self.spec.tile_pad, self.spec.size_multiple, maximum, maximum,
                      self.spec.value_range)
        runners = []
        for session in self.sessions:
            run = _adapt(session.run_box, c, self.spec.in_channels, self.spec.out_channels)
            runners.append(tta_runner(run) if options.tta else run)
        upscale_tiled(job, runners, self.tile_size(options, (h, w)), progress)
        return out

    def upscale_array(self, src: np.ndarray, options: Options, progress: Progress | None = None) -> np.ndarray:
        """The model's output resized to the requested outscale (Lanczos) when it differs."""
        out = self.run_model(src, options, progress)
        if options.outscale is None or abs(options.outscale - self.spec.scale) < 1e-9:
            return out
        return resize(out, target_size(src.shape[1], src.shape[0], options.outscale), "lanczos")

    def upscale_picture(self, pic: Picture, options: Options, progress: Progress | None = None) -> Picture:
        """Colour through the net, alpha on its own (bicubic, or the net with `alpha='model'`)."""
        color = self.upscale_array(pic.color, options, progress)
        alpha = None
        if pic.alpha is not None:
            if options.alpha == "model":
                alpha = self.upscale_array(pic.alpha, options)
            else:
                alpha = resize_plane(pic.alpha, (color.shape[1], color.shape[0]), "bicubic")
        return replace(pic, color=color, alpha=alpha)
