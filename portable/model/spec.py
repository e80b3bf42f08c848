"""The model file contract: `NAME.param` + `NAME.bin` + `NAME.json`.

`convert/` writes the JSON sidecar, the runtime reads it. Everything the runtime needs to run a
model correctly lives here (scale, blobs, value range, size multiple, seam-free padding), so the
runtime never guesses from flags or file names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..atomic import write_bytes_atomic

SPEC_VERSION = 1


MAX_SIDECAR_BYTES = 1 << 20  # a real sidecar is ~1 KB; a bigger one is not worth parsing
MAX_TILE_PAD = 1024  # context per tile side; beyond this a tile would not fit any memory
MAX_SIZE_MULTIPLE = 64
# JSON type each sidecar field must have (bool is not accepted where a number is meant).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "scale": (int,), "in_channels": (int,), "out_channels": (int,),
    "input_blob": (str,), "output_blob": (str,), "value_range": (list, tuple), "size_multiple": (int,),
    "tile_pad": (int,), "arch": (str,), "arch_params": (dict,), "fp16_weights": (bool,),
    "source": (str,), "license": (str,),
}


class ModelSpecError(UserError, ValueError):
    """A sidecar JSON is missing, unreadable or inconsistent."""


def _show(value: Any) -> str:
    """A value for an error message, cut short: hostile sidecars hold huge ones."""
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_types(data: dict[str, Any]) -> None:
    """Refuse wrong JSON types with one line (they would otherwise fail deep inside the runtime)."""
    for key, value in data.items():
        allowed = _FIELD_TYPES.get(key)
        if allowed is None:
            continue
        wrong = not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        if wrong:
            raise ModelSpecError(f"sidecar field {key!r} must be {allowed[0].__name__}, got {_show(value)}")
    if "value_range" in data:
        lo_hi = data["value_range"]
        ok = len(lo_hi) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lo_hi)
        if not ok or not all(math.isfinite(v) for v in lo_hi) or not lo_hi[0] < lo_hi[1]:
            raise ModelSpecError("sidecar field 'value_range' must be two finite numbers [low, high] with low < high")
    for key in ("input_blob", "output_blob"):
        blob = data.get(key)
        if blob is not None and (not blob or len(blob) > 256 or any(ch.isspace() for ch in blob)):
            raise ModelSpecError(f"sidecar field {key!r} must be a blob name without spaces")


def parse_value_range(text: str) -> tuple[float, float]:
    """`--value-range LO,HI`: the float range a foreign model expects for pixel values (e.g.
    `0,255` for nets trained on raw 8-bit values); overrides the sidecar or the [0, 1] default."""
    return check_value_range(text.split(","), repr(text[:40]))


def check_value_range(values: object, shown: str) -> tuple[float, float]:
    """Two finite floats LOW < HIGH, from the command line's text or the API's tuple (`(0, 0)`
    once divided by zero in the tiler, `(1, 0)` wrote an inverted image)."""
    try:
        lo, hi = (float(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ModelSpecError(f"--value-range {shown}: expected LOW,HIGH, e.g. 0,1 or 0,255") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ModelSpecError(f"--value-range {shown}: two finite numbers with LOW < HIGH")
    return lo, hi


@dataclass(frozen=True)
class ModelSpec:
    """What a runtime must know about an ncnn super-resolution model.

    Args:
        name: model name (the file stem).
        scale: the network's own upscale factor (1, 2, 3 or 4).
        in_channels / out_channels: image channels in and out (3 for RGB models).
        input_blob / output_blob: ncnn blob names (`data`/`output` official, `in0`/`out0` pnnx).
        value_range: the float range the network sees and returns for pixel values; (0, 1)
            means 8-bit pixels are divided by 255 before the net and multiplied after.
        size_multiple: the input height and width must be a multiple of this (pixel-unshuffle
            models: 2 for x2, 4 for x1); the runtime pads by mirroring and crops back.
        tile_pad: input pixels of context on each side of a tile that make tiled output equal
            untiled output within 1/255 (measured or receptive-field based).
        arch: architecture name, e.g. `RRDBNet` or `SRVGGNetCompact`.
        arch_params: the architecture's hyper-parameters (constructor arguments).
        fp16_weights: whether the `.bin` stores fp16 convolution weights.
        source: where the weights come from (URL, file, or `converted from X`).
        license: licence of the weights (SPDX id where one exists).
    """

    name: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    input_blob: str = "in0"
    output_blob: str = "out0"
    value_range: tuple[float, float] = (0.0, 1.0)
    size_multiple: int = 1
    tile_pad: int = 16
    arch: str = "unknown"
    arch_params: dict[str, Any] = field(default_factory=dict)
    fp16_weights: bool = False
    source: str = ""
    license: str = "unknown"

    def __post_init__(self) -> None:
        if self.scale < 1 or self.scale > 16:
            raise ModelSpecError(f"model {self.name!r}: scale {self.scale} is not in 1..16")
        if self.size_multiple < 1:
            raise ModelSpecError(f"model {self.name!r}: size_multiple must be >= 1")
        if not 0 <= self.tile_pad <= MAX_TILE_PAD:
            raise ModelSpecError(f"model {self.name!r}: tile_pad must be in 0..{MAX_TILE_PAD}")
        if self.size_multiple > MAX_SIZE_MULTIPLE:
            raise ModelSpecError(f"model {self.name!r}: size_multiple must be <= {MAX_SIZE_MULTIPLE}")
        if self.in_channels not in (1, 3, 4) or self.out_channels not in (1, 3, 4):
            raise ModelSpecError(f"model {self.name!r}: unsupported channel count")

    def to_json(self) -> str:
        data = asdict(self)
        data["value_range"] = list(self.value_range)
        data["spec_version"] = SPEC_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if type(version) is not int or version < 1:
            raise ModelSpecError(f"sidecar spec_version must be a positive integer, got {_show(version)}")
        if version > SPEC_VERSION:
            raise ModelSpecError(f"sidecar spec_version {version} is newer than this runtime ({SPEC_VERSION})")
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelSpecError(f"unknown sidecar keys: {', '.join(unknown)}")
        if "scale" not in data or "name" not in data:
            raise ModelSpecError("sidecar lacks 'name' or 'scale'")
        _check_types(data)
        if "value_range" in data:
            data["value_range"] = tuple(float(v) for v in data["value_range"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelSpecError(f"bad sidecar: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> "ModelSpec":
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_SIDECAR_BYTES + 1)
            if len(raw) > MAX_SIDECAR_BYTES:
                raise ModelSpecError(f"{path}: model sidecar is larger than {MAX_SIDECAR_BYTES} bytes")
            data = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            # ValueError: bad JSON or an integer of more digits than Python converts;
            # RecursionError: arrays nested thousands of levels deep.
            if isinstance(exc, ModelSpecError):
                raise
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelSpecError(f"{path}: cannot read model sidecar ({detail[:200]})") from None
        if not isinstance(data, dict):
            raise ModelSpecError(f"{path}: model sidecar is not a JSON object")
        try:
            return cls.from_dict(data)
        except ModelSpecError as exc:
            raise ModelSpecError(f"{path}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write atomically (temporary file + rename) so a crash never leaves half a sidecar."""
        write_bytes_atomic(Path(path), self.to_json().encode("utf-8"))
