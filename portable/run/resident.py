"""Device-resident segments: on a Vulkan GPU, the feature maps between a net's segments stay in
device memory instead of a round trip through the host per segment and tile.

Why a native library: ncnn's Python wheel exposes neither `VkMat` nor its command API, so the
host runner (segrun.py) must download every segment's output and upload it again for the next.
`deploy/build.sh` builds `librealesr_portable_resident.so` beside the C++ runner (the same ncnn,
Vulkan on); point `REALESR_PORTABLE_RESIDENT` at it and the runtime uses it on Vulkan devices. The
plan stays here: segrun.py's `steps` decides every window, this module writes them as a small
text program, and the library only executes it (deploy/native/resident.cpp). The library gets
a model only after the Session has checked it, the same files ncnn's wheel already loaded.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..device.precision import PrecisionOptions
from ..device.quiet import quiet_stderr
from ..errors import UserError
from ..plan.segments import Segment
from .segrun import Region, steps
from .session import TileError

ENV = "REALESR_PORTABLE_RESIDENT"
_ERROR_SIZE = 512


class ResidentError(UserError, RuntimeError):
    """The resident runner named by REALESR_PORTABLE_RESIDENT cannot be loaded or cannot run here."""

    exit_code = 1  # a failure of this machine's set-up, not bad usage


def library_path() -> Path | None:
    """The library the environment names, or None (the host runner is used)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def _load(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
        create, run, destroy = lib.rp_resident_create, lib.rp_resident_run, lib.rp_resident_destroy
    except (OSError, AttributeError) as exc:
        raise ResidentError(f"{ENV}={path}: not the resident runner library ({exc}); build it with deploy/build.sh") from None
    create.restype = ctypes.c_void_p
    create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    run.restype = ctypes.c_int
    run.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    destroy.restype = None
    destroy.argtypes = [ctypes.c_void_p]
    return lib


class ResidentNet:
    """One checked model loaded by the resident library on one Vulkan device."""

    def __init__(self, library: Path, param_text: str, weights: bytes, device_index: int,
                 options: PrecisionOptions) -> None:
        self._lib = _load(library)
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        with quiet_stderr():  # the library's ncnn prints a banner per device, as the wheel's does
            handle = self._lib.rp_resident_create(param_text.encode(), weights, len(weights), device_index,
                                                  int(options.use_fp16_packed), int(options.use_fp16_storage),
                                                  int(options.use_fp16_arithmetic), error, _ERROR_SIZE)
        if not handle:
            raise ResidentError(f"resident runner: {error.value.decode(errors='replace')}")
        self._handle = handle
        # the net goes with this object (and at exit, before the library's own ncnn shuts down)
        self._finalizer = weakref.finalize(self, self._lib.rp_resident_destroy, handle)

    def run(self, program: str, chw: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
        """Execute `program` on `chw` ((C,H,W) float32); returns the result map of `out_shape`."""
        src = np.ascontiguousarray(chw, dtype=np.float32)
        out = np.empty(out_shape, np.float32)
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        code = self._lib.rp_resident_run(self._handle, program.encode(), src.ctypes.data, *src.shape,
                                         out.ctypes.data, *out_shape, error, _ERROR_SIZE)
        message = error.value.decode(errors="replace")
        if code == 2:
            raise TileError(message)  # out of device memory: the tiler retries smaller
        if code != 0:
            raise ResidentError(f"resident runner: {message}")
        return out


def program(schedule: Sequence[tuple[Segment, int]], root: Callable[[str], str], keep: Callable[[int], set[str]],
            input_blob: str, output_blob: str, height: int, width: int, box: Region) -> tuple[str, Region]:
    """The resident program for one (super-)tile of `height` x `width` and the region (net-input
    pixels) that its result map covers: `box`, or the whole tile after a segment run whole."""
    lines = [f"input {root(input_blob)}"]
    covered = box
    for segment, windows in steps(schedule, box, height, width):
        lines.append(f"segment {segment.scale}")
        lines += [f"feed {blob}" for blob in segment.feeds]
        lines += [f"out {blob} {root(blob)}" for blob in segment.outputs]
        lines += ["window " + " ".join(map(str, core + read)) for core, read in windows]
        lines.append(" ".join(["keep", *sorted(keep(segment.stop))]))
        cores = [core for core, _ in windows]
        covered = (cores[0][0], cores[-1][1], cores[0][2], cores[-1][3])
    lines.append(f"result {root(output_blob)}")
    return "\n".join(lines) + "\n", covered
