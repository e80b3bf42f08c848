"""Upscaling one picture: channels adapted to the model, the net run segment by segment with
exact tiles (segrun.py), super-tiles when the features outgrow the memory budget, alpha,
outscale. Stateless per call, so one `Engine` serves many threads.

Borders: the image gets the PyTorch reference's pre-pad (`RealESRGANer`: 10 px mirrored at the
bottom and right, zero padding by the convolutions at the top and left), whatever the tiling, so
borders cost what the reference pays (8% of a 256x256 image) and look the same, and a tiled run
equals the untiled run of the whole net on the pre-padded image; only cuts between tiles carry
context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..plan.budget import default_budget, super_tile
from ..device.precision import ncnn_options
from ..plan.segments import EXTRACT_MACS
from ..image.io import Picture
from ..image.scale import resize, resize_plane, target_size
from .resident import ResidentNet, library_path, program as resident_program
from .segrun import run_segments
from .session import Session
from .tiler import Box, Runner, TileJob, crop_runner, upscale_tiled
from .options import UpscaleOptions
from .tta import tta_average

#: Engine's callers (tests, benches) name the per-call choices `Options`: the same one record.
Options = UpscaleOptions

PRE_PAD = (0, 10, 0, 10)  # mirrored pixels top, bottom, left, right: RealESRGANer's pre_pad
Progress = Callable[[int, int], None]


def _adapt(run: Runner, channels: int, model_in: int, model_out: int, opaque: float = 1.0) -> Runner:
    """Feed a 1- or 3-channel image to a 1-, 3- or 4-channel model and return the image's channels.

    A 4-channel model gets an opaque alpha plane (`opaque`: the top of its value range; a
    3-channel tile once went into its 4-channel convolution as it was) and its own alpha output
    is dropped: `--alpha` decides the picture's."""
    if channels == model_in == model_out:
        return run

    def adapted(chw: np.ndarray, box: Box) -> np.ndarray:
        x = chw
        if channels == 1 and model_in == 3:
            x = np.repeat(chw, 3, axis=0)
        elif channels == 3 and model_in == 1:
            x = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), chw, axes=1)[None]
        if model_in == 4:
            colour = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x
            x = np.concatenate([colour, np.full_like(colour[:1], opaque)])
        y = run(x, box)
        if y.shape[0] == 4 and channels != 4:  # an RGBA model's alpha: the picture's alpha is upscaled apart
            y = y[:3]
        if channels == 1 and y.shape[0] == 3:
            return y.mean(axis=0, keepdims=True)
        if channels == 3 and y.shape[0] == 1:
            return np.repeat(y, 3, axis=0)
        return y

    return adapted


class Engine:
    """Runs a model over whole pictures using one or more sessions (devices) in parallel.

    `max_memory`: bytes for features and working memory (None: the devices' default budget).
    `resident`: the device-resident runner library (None: REALESR_PORTABLE_RESIDENT, if set).
    """

    def __init__(self, sessions: Sequence[Session], max_memory: int | None = None,
                 resident: Path | None = None) -> None:
        if not sessions:
            raise ValueError("at least one session is needed")
        self.sessions = list(sessions)
        self.spec = sessions[0].spec
        self.budget = max_memory or min(default_budget(session.device) for session in self.sessions)
        # run/seams.py's measured seam bounds of a global graph per piece side: a probe costs two runs
        self.seam_bounds: dict[int, tuple[int, int]] = {}
        self.resident = self._resident(resident)
        self._pooled: tuple[int, ...] | None = None  # the shape the sessions' pools are warm for

    def _resident(self, library: Path | None) -> ResidentNet | None:
        """The device-resident runner (run/resident.py) for one ncnn session on one Vulkan device
        whose graph runs in segments, when a library is given or REALESR_PORTABLE_RESIDENT names one."""
        library = library or library_path()
        first = self.sessions[0]
        if (library is None or len(self.sessions) != 1 or not first.device.is_gpu or first.workers != 1
                or first.segmenter is None or not hasattr(first, "param_text")):
            return None
        options = ncnn_options(first.device, first.fp16_arith, first.fp32)
        return ResidentNet(library, first.param_text, first.weights, first.device.index, options)

    def _stored_bytes_px(self) -> float:
        """Bytes per pre-padded input pixel held while a super-tile runs: the kept feature maps
        (in and out of a segment; the device-resident runner also holds the joined rows of tile
        cores while it joins them into the output map), the float input and the float output."""
        first = self.sessions[0]
        maps = 3 if self.resident is not None else 2
        stored = maps * first.segmenter.stored_bytes_px if first.segmenter is not None else first.net_bytes_px
        return stored + 4 * (self.spec.in_channels + self.spec.out_channels * self.spec.scale**2)

    @property
    def border(self) -> tuple[int, int, int, int]:
        """The image's mirrored border: RealESRGANer's pre-pad, except for a graph that consumes
        its own runner's pre-padding (RealCUGAN): that runner adds nothing else, and the extra
        rows would change what its global (squeeze-excitation) pooling averages."""
        return (0, 0, 0, 0) if getattr(self.sessions[0], "pre_pad", 0) else PRE_PAD

    def _call_macs(self) -> float:
        """The per-call cost the planner uses: the dearest device's (tiles are shared among them)."""
        costs = [session.call_macs() for session in self.sessions if hasattr(session, "call_macs")]
        return max(costs) if costs else EXTRACT_MACS

    def tile_size(self, options: Options, shape: tuple[int, int] | None = None) -> int:
        """`-t` as given, or the largest automatic segment tile for an image of `shape` (0: whole)."""
        segmenter = self.sessions[0].segmenter
        if options.tile or shape is None or segmenter is None:
            return options.tile
        top, bottom, left, right = self.border
        h, w = shape[0] + top + bottom, shape[1] + left + right
        workers = sum(session.workers for session in self.sessions)
        return max(t for _, t in segmenter.schedule(h, w, self.budget / 2 / workers, workers=workers,
                                                    call_macs=self._call_macs()))

    def _runner(self, tile: int) -> Runner:
        """The whole net on one (super-)tile, segment by segment, returning only the box."""
        first = self.sessions[0]
        segmenter = first.segmenter
        if segmenter is None:  # a graph we cannot follow: whole tiles on the first device
            return crop_runner(first.run, self.spec.scale)
        extracts = [session.extract for session in self.sessions for _ in range(session.workers)]
        s = self.spec.scale
        call_macs = self._call_macs()

        def run(chw: np.ndarray, box: Box) -> np.ndarray:
            top, left, height, width = box
            schedule = segmenter.schedule(chw.shape[1], chw.shape[2], self.budget / 2 / len(extracts), tile,
                                          workers=len(extracts), call_macs=call_macs)
            wanted = (top, top + height, left, left + width)
            if self.resident is not None:  # the maps between segments stay on the device
                text, (y0, y1, x0, x1) = resident_program(schedule, segmenter.graph.root, segmenter.keep,
                                                          self.spec.input_blob, self.spec.output_blob,
                                                          chw.shape[1], chw.shape[2], wanted)
                out = self.resident.run(text, chw, (self.spec.out_channels, (y1 - y0) * s, (x1 - x0) * s))
                top, left = top - y0, left - x0
            else:
                stored = run_segments(schedule, extracts, segmenter.graph.root, segmenter.keep, chw,
                                      self.spec.input_blob, wanted)
                out = stored[segmenter.graph.root(self.spec.output_blob)]
            return out[:, top * s : (top + height) * s, left * s : (left + width) * s]

        return run

    def _align(self) -> int:
        """Tile origins fall on this multiple (whole-net tiles of a strided graph; 1 for segments,
        which align their own tiles)."""
        first = self.sessions[0]
        return getattr(first, "net_align", 1) if first.segmenter is None else 1

    def context(self) -> int:
        """Pixels of context per side of a (super-)tile: the graph's exact context for a net run
        whole per tile when every layer is local, else the spec's `tile_pad` (measured for our
        models; for a graph that reads the whole image only a best effort, see run/seams.py)."""
        first = self.sessions[0]
        exact = getattr(first, "net_context", None) if first.segmenter is None else None
        pad = self.spec.tile_pad if exact is None else exact
        return self._aligned(pad)

    def pieces(self, shape: tuple[int, int], options: Options) -> int:
        """The side of the (super-)tiles an image of `shape` (h, w) is cut into; 0: one piece."""
        h, w = shape
        first = self.sessions[0]
        # A net run whole per tile (torch, or a graph we cannot follow) is tiled by `-t` itself.
        whole_net_tiles = options.tile if first.segmenter is None else 0
        pieces = whole_net_tiles or super_tile(h, w, self.border, self.context(), self._stored_bytes_px(), self.budget)
        return self._aligned(pieces)

    def _aligned(self, side: int) -> int:
        align = self._align()
        return -(-side // align) * align

    def run_model(self, src: np.ndarray, options: Options, progress: Progress | None = None,
                  pieces: int | None = None) -> np.ndarray:
        """(H,W,C) uint8/uint16/float32 -> (H*s,W*s,C), same dtype, at the model's own scale.
        `pieces`: the (super-)tile side instead of the planned one (seams.py measures with it)."""
        if src.ndim == 2:
            return self.run_model(src[..., None], options, progress, pieces)[..., 0]
        maximum = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(src.dtype, 1.0)
        if options.tta:
            plain = replace(options, tta=False)
            return tta_average(lambda x: self.run_model(x, plain, progress, pieces), src, maximum)
        h, w, c = src.shape
        s = self.spec.scale
        out = np.empty((h * s, w * s, c), dtype=src.dtype)
        pad = self.context()
        first = self.sessions[0]
        pieces = self.pieces((h, w), options) if pieces is None else self._aligned(pieces)
        # `pad` even for one piece: a piece split after running out of memory still needs context
        job = TileJob(src, out, s, pad, self.spec.size_multiple, maximum, maximum, self.spec.value_range,
                      pre_pad=self.border)
        run = _adapt(self._runner(options.tile), c, self.spec.in_channels, self.spec.out_channels,
                     opaque=self.spec.value_range[1])
        on_device = first.device_job(job) if c == self.spec.in_channels == self.spec.out_channels else None
        if on_device is not None:  # the engine converts pixels where it runs the net
            job, run = on_device
        # Warm pools: the next image of the same shape (a video, a folder of frames) reuses the
        # blocks this one allocated instead of faulting in fresh pages (animevideov3-x4 512x512 on
        # the CPU: 1.80 -> 1.61 s); another shape starts from empty pools, so the peak stays one image's.
        if src.shape != self._pooled:
            self.release()
            self._pooled = src.shape
        try:
            upscale_tiled(job, run, pieces, progress)
        except BaseException:
            self.release()  # a failed image (out of memory, interrupted) gives its memory back
            raise
        return out

    def release(self) -> None:
        """Return the memory the sessions pooled for the last image; the next image starts cold."""
        self._pooled = None
        for session in self.sessions:
            session.release()

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
