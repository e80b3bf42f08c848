"""Moved to `realesr_portable.archs.srvgg.module`; this name stays for old imports."""

from ...archs.srvgg.module import ACT_TYPES, LEAKY_SLOPE, SRVGGNetCompact

__all__ = ["ACT_TYPES", "LEAKY_SLOPE", "SRVGGNetCompact"]
