"""Moved to `realesr_portable.archs.rrdbnet.module`; this name stays for old imports."""

from ...archs.rrdbnet.module import LRELU_SLOPE, RESIDUAL_SCALE, RRDB, ResidualDenseBlock, RRDBNet

__all__ = ["LRELU_SLOPE", "RESIDUAL_SCALE", "RRDB", "RRDBNet", "ResidualDenseBlock"]
