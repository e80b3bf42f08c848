"""A `TileJob` whose pixel conversion runs on the torch device: the source goes up once in its
own integer type, each tile's mirrored padding is gathered there, and the clipped, rounded output
comes back in the output's type.

The arithmetic is the host job's (run/tiler.py) in the same float32 steps, so the pixels are the same;
only where it runs differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..run.tiler import TileJob, Window, non_finite

if TYPE_CHECKING:
    from .session import TorchSession


@dataclass(frozen=True)
class DeviceJob(TileJob):
    """`read` returns a (C,h,w) float32 tensor on the session's device; `write` takes one."""

    session: Any = None  # TorchSession (Any: a dataclass field after TileJob's defaults)
    uploaded: dict = field(default_factory=dict, compare=False, repr=False)  # the source, once on the device

    def read(self, win: Window) -> tuple[torch.Tensor, int, int]:  # type: ignore[override]
        rows, cols, top, left = self.indices(win)
        session: TorchSession = self.session
        with session.stream():
            if "src" not in self.uploaded:
                self.uploaded["src"] = session.upload(self.src)
            src = self.uploaded["src"]
            index = [torch.from_numpy(i).to(src.device, non_blocking=True) for i in (rows, cols)]
            patch = src.index_select(0, index[0]).index_select(1, index[1])
            chw = patch.permute(2, 0, 1).to(torch.float32)
            lo, hi = self.value_range
            chw = chw * ((hi - lo) / self.src_max)
            if lo:
                chw += lo
        return chw, top, left

    def write(self, win: Window, crop: torch.Tensor) -> None:  # type: ignore[override]
        self.check(win, tuple(crop.shape))
        s = self.scale
        lo, hi = self.value_range
        target = self.out[win.y0 * s : win.y1 * s, win.x0 * s : win.x1 * s]
        with self.session.stream():
            # as the host job: clamp and round would turn NaN/inf (fp16 overflow) into black pixels
            if not bool(torch.isfinite(crop).all()):
                raise non_finite(win)
            if lo:
                crop = crop - lo
            hwc = crop.permute(1, 2, 0) * (self.out_max / (hi - lo))
            hwc.clamp_(0.0, self.out_max)
            if self.out.dtype == np.float32:
                torch.from_numpy(target).copy_(hwc)
            elif self.out.dtype == np.uint8:
                torch.from_numpy(target).copy_(hwc.round_().to(torch.uint8))
            else:  # uint16: torch's uint16 has few kernels, so int32 comes down and numpy narrows it
                target[...] = hwc.round_().to(torch.int32).cpu().numpy()
