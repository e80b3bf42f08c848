"""The `NAME.json` sidecar of an exported model, including the tile padding that makes tiling seam-free.

Why measured padding for some families (RRDBNet): the receptive field is huge on paper (about 350 input pixels
for x4plus) but most of it contributes nothing visible; the padding that actually keeps tiled and
untiled output within 1/255 is found by cutting tiles out of a real probe image and comparing with
the whole-image result (on the official x4plus about 40-48 px; the 10 px used by other tools
leaves seams of several levels). Where a family's receptive field is small and exact
(SRVGGNetCompact), it is used as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..model.spec import ModelSpec
from .detect import ArchInfo, UnsupportedModelError
from .direct_writer import NcnnModel
from .verify import NcnnRunner, probe_image

#: Tiled output must stay within this of untiled output (half the 1/255 bound, for a margin).
TILE_TOLERANCE = 0.5 / 255.0
PAD_STEP = 8
MAX_MEASURED_PAD = 64
_PROBE_ROWS = 32

Runner = Callable[[np.ndarray], np.ndarray]


def effective_scale(info: ArchInfo) -> int:
    """The model's scale after any resize its graph appends (official animevideov3 x2/x3: 4 * 0.5 / 0.75)."""
    value = info.scale * info.output_resize
    if abs(value - round(value)) > 1e-6 or round(value) < 1:
        raise UnsupportedModelError(f"{info.name}: scale {info.scale} x resize {info.output_resize} is not a whole number")
    return int(round(value))


def receptive_radius(info: ArchInfo) -> int:
    """Input pixels on each side that can influence an output pixel (an upper bound, whole pixels)."""
    radius = info.family.receptive_radius
    if radius is None:
        raise UnsupportedModelError(f"no receptive field known for {info.name}")
    return int(radius(info.params)) + (0 if info.output_resize == 1.0 else 1)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def error_by_distance(run: Runner, scale: int, width: int, height: int = _PROBE_ROWS, channels: int = 3) -> np.ndarray:
    """Max |tiled - whole| of the output, by input distance from a tile cut (index d = d pixels).

    `run` maps (3, H, W) float32 to (3, H*scale, W*scale). A probe of `2*width` columns is run
    whole and as its left and right halves; output columns of a half are compared with the
    same columns of the whole, which gives the error at every distance from the cut in one go.
    """
    image, _ = probe_image(height, 2 * width, channels)
    whole = np.clip(run(image), 0, 1)
    left = np.clip(run(np.ascontiguousarray(image[:, :, :width])), 0, 1)
    right = np.clip(run(np.ascontiguousarray(image[:, :, width:])), 0, 1)
    cut = width * scale
    err_left = np.abs(left - whole[:, :, :cut]).max(axis=(0, 1))[::-1]  # column nearest the cut first
    err_right = np.abs(right - whole[:, :, cut:]).max(axis=(0, 1))
    per_column = np.maximum(err_left, err_right)
    return per_column.reshape(width, scale).max(axis=1)


@dataclass(frozen=True)
class PadChoice:
    """A tile padding and the worst tiled-vs-whole difference left beyond it (values in [0, 1])."""

    pad: int
    worst_error: float

    @property
    def seam_free(self) -> bool:
        return self.worst_error <= TILE_TOLERANCE


def measure_tile_pad(run: Runner, scale: int, limit: int, max_pad: int = MAX_MEASURED_PAD,
                     tolerance: float = TILE_TOLERANCE, channels: int = 3) -> PadChoice:
    """Smallest pad (a multiple of 8, or `limit` if smaller) beyond which every tile-cut error is
    within `tolerance`; `max_pad` (with its remaining error) when none is."""
    width = min(max_pad, _round_up(limit, PAD_STEP)) + PAD_STEP
    errors = error_by_distance(run, scale, width, channels=channels)
    tail_max = np.maximum.accumulate(errors[::-1])[::-1]  # worst error at this distance or further
    pads = list(range(0, width, PAD_STEP))
    pad = next((p for p in pads if tail_max[p] <= tolerance), pads[-1])
    if limit < pad:  # the receptive field ends first: exact
        return PadChoice(limit, 0.0)
    return PadChoice(pad, float(tail_max[pad]))


def tile_pad_for(info: ArchInfo, model: NcnnModel | Runner) -> PadChoice:
    """The padding to declare: the exact receptive field, or measured on `model` where the
    family's field is a loose bound (`ArchFamily.measure_pad`, e.g. RRDBNet).

    `model` is the exported ncnn model or a runner of it (an NcnnRunner, to reuse a loaded net).
    """
    multiple = info.size_multiple
    radius = receptive_radius(info)
    if not info.family.measure_pad:
        return PadChoice(_round_up(radius, multiple), 0.0)
    channels = (info.in_channels, info.out_channels)
    run = NcnnRunner(model, exact=True, scale=effective_scale(info), channels=channels) if isinstance(model, NcnnModel) else model
    choice = measure_tile_pad(run, effective_scale(info), radius, channels=info.in_channels)
    return PadChoice(_round_up(choice.pad, multiple), choice.worst_error)


def build_spec(info: ArchInfo, name: str, model: NcnnModel, fp16: bool, tile_pad: int,
               source: str = "", license: str = "unknown") -> ModelSpec:
    """The sidecar for `model`, exported from weights of architecture `info`."""
    params = dict(info.params)
    if info.output_resize != 1.0:
        params["output_resize"] = info.output_resize
    return ModelSpec(
        name=name,
        scale=effective_scale(info),
        in_channels=info.in_channels,
        out_channels=info.out_channels,
        input_blob=model.input_blob,
        output_blob=model.output_blob,
        value_range=(0.0, 1.0),
        size_multiple=info.size_multiple,
        tile_pad=int(tile_pad),
        arch=info.name,
        arch_params=params,
        fp16_weights=fp16,
        source=source,
        license=license,
    )
