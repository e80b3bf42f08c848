"""`UpscaleOptions`: everything a user chooses for an upscale, in one frozen record.

Why one record: the command line, the Python API (`Upscaler`), `--ray` (shipped whole to every
actor) and video (its resume manifest) all describe the same upscale. Each builds this record
once and passes it on whole, so a new option is one field here: every path carries it, its check
runs for all of them, and `manifest_settings` puts it in a resume manifest unless its field says
it cannot change the output's pixels.

Each field's metadata names its command-line flag (messages and manifests speak in flags; a
Python-only field gets a plain name) and, with `pixels=False`, says the field never changes an
output pixel (tiling is exact; threads and memory only change speed; the image-file encoding
does not touch a video's frames).
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..device.select import parse_gpu_option
from ..errors import UsageError
from ..image.io import DEFAULT_MAX_PIXELS, FORMATS, PNG_LEVEL, check_png_level
from ..model.catalog import DEFAULT_MODEL
from ..model.spec import check_value_range
from ..plan.budget import parse_memory
from .backend import BACKENDS, TorchOptions

ALPHA_MODES = ("bicubic", "model")
#: `--threads` ceiling: the largest CPUs have a few hundred; ncnn's OpenMP pool aborts ("Thread
#: creation failed") or crashes when asked for tens of thousands.
MAX_THREADS = 1024


def _flag(flag: str, pixels: bool = True) -> dict[str, Any]:
    return {"flag": flag, "pixels": pixels}


@dataclass(frozen=True)
class UpscaleOptions:
    """One upscale's choices; `tile=0` automatic, `outscale=None` the model's own scale.

    The model and where it runs:
        model: a model name or a `.param` path (its `.bin`/`.json` beside it).
        gpu: "auto" (hardware Vulkan, else CPU), -1 (CPU), an index, or "0,1" to share tiles.
        backend: "ncnn", "torch" (`gpu` is then a CUDA/ROCm index) or "auto".
        fp32: force fp32 (default: fp16 storage with fp32 arithmetic on Vulkan, fp32 on the CPU).
        fp16_arith: fp16 arithmetic on Vulkan (opt-in: lower quality, see device/precision.py).
        threads: CPU threads for ncnn (default: all cores).
        max_memory: budget for features and tiles, bytes or "512M"/"2G" (stored as bytes).
        dn, dn_model: denoise strength in [0, 1] blending the model's weights with `dn_model`'s.
        value_range: the pixel range the model expects, e.g. (0, 255); default: its sidecar's.
        torch_options: the torch engine's speed switches (run/backend.py).
    Each picture:
        tile, outscale (1..16), tta (8 flips/rotations averaged), alpha ("bicubic" or "model").
    How results are written (images):
        fmt (png, jpg, webp; None: the input's), quality (jpg/webp), png_level (zlib 0-9),
        background (RGB that alpha is flattened on for jpg), max_pixels (refuse larger inputs; 0: no limit).
    """

    model: str = field(default=DEFAULT_MODEL, metadata=_flag("model"))
    gpu: str | int | None = field(default="auto", metadata=_flag("-g", pixels=False))  # the manifest names the devices
    backend: str = field(default="auto", metadata=_flag("--backend"))
    fp32: bool = field(default=False, metadata=_flag("--fp32"))
    fp16_arith: bool = field(default=False, metadata=_flag("--fp16-arith"))
    threads: int | None = field(default=None, metadata=_flag("--threads", pixels=False))
    max_memory: int | str | None = field(default=None, metadata=_flag("--max-memory", pixels=False))
    dn: float | None = field(default=None, metadata=_flag("--dn"))
    dn_model: str | None = field(default=None, metadata=_flag("--dn-model"))
    value_range: tuple[float, float] | None = field(default=None, metadata=_flag("--value-range"))
    torch_options: TorchOptions | None = field(default=None, metadata=_flag("torch options"))  # Python only
    tile: int = field(default=0, metadata=_flag("-t", pixels=False))
    outscale: float | None = field(default=None, metadata=_flag("-s"))
    tta: bool = field(default=False, metadata=_flag("--tta"))
    alpha: str = field(default="bicubic", metadata=_flag("--alpha"))
    fmt: str | None = field(default=None, metadata=_flag("-f", pixels=False))
    quality: int = field(default=95, metadata=_flag("--quality", pixels=False))
    png_level: int = field(default=PNG_LEVEL, metadata=_flag("--png-level", pixels=False))
    background: tuple[int, int, int] = field(default=(255, 255, 255), metadata=_flag("--background", pixels=False))
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata=_flag("--max-pixels", pixels=False))

    def __post_init__(self) -> None:
        """Refuse impossible values before any model loads, and store each in one form (picklable)."""
        put = object.__setattr__
        put(self, "model", os.fspath(self.model))
        if self.dn_model is not None:
            put(self, "dn_model", os.fspath(self.dn_model))
        if self.max_memory is not None:
            put(self, "max_memory", parse_memory(self.max_memory))
        if self.value_range is not None:
            put(self, "value_range", check_value_range(self.value_range, repr(self.value_range)))
        try:  # operator.index: ints of any kind (numpy's too), never a float or text
            rgb = tuple(operator.index(v) for v in self.background)
        except TypeError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise UsageError(f"--background {self.background!r}: expected three integers 0-255")
        put(self, "background", rgb)
        parse_gpu_option(self.gpu)  # its format only: which devices exist is known where they open
        if not isinstance(self.tile, int) or isinstance(self.tile, bool) or self.tile < 0:
            raise UsageError(f"-t {self.tile!r}: expected 0 (automatic) or a tile size")
        if self.outscale is not None and not 1.0 <= self.outscale <= 16.0:
            raise UsageError(f"-s {self.outscale:g}: expected a scale between 1 and 16")
        if self.alpha not in ALPHA_MODES:
            raise UsageError(f"--alpha {self.alpha!r}: expected one of {', '.join(ALPHA_MODES)}")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.fmt is not None and self.fmt.lower() not in FORMATS:
            raise UsageError(f"-f {self.fmt!r}: expected png, jpg or webp")
        if (self.dn is None) != (self.dn_model is None):
            raise UsageError("--dn and --dn-model go together")
        if self.dn is not None and not 0.0 <= self.dn <= 1.0:
            raise UsageError(f"--dn {self.dn:g}: expected a strength between 0 and 1")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: expected 1 to 100")
        if self.max_pixels < 0:
            raise UsageError(f"--max-pixels {self.max_pixels}: expected 0 (no limit) or more")
        if self.threads is not None and not (isinstance(self.threads, int) and 1 <= self.threads <= MAX_THREADS):
            raise UsageError(f"--threads {self.threads}: expected 1 to {MAX_THREADS} CPU threads")
        check_png_level(self.png_level)

    @classmethod
    def given(cls, options: UpscaleOptions | None, fields: dict[str, Any]) -> UpscaleOptions:
        """`options` as given, or built from keywords: what `Upscaler` and `upscale_many` accept."""
        if options is None:
            return cls(**fields)
        if fields:
            raise TypeError(f"give either options= or option keywords, not both (got {', '.join(fields)})")
        return options

    def manifest_settings(self) -> dict[str, Any]:
        """The fields that may change output pixels, keyed by flag (`Upscaler.settings` adds what
        they resolve to: the model's digest, the devices, the backend chosen)."""
        return {f.metadata["flag"]: _plain(getattr(self, f.name)) for f in fields(self) if f.metadata["pixels"]}


def _plain(value: Any) -> Any:
    """A value as JSON keeps it (tuples as lists, option records as dicts), so a manifest read back compares equal."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, TorchOptions):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return value
