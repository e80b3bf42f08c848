"""Storage rules: what a layer holds beside its blobs, the arrays its `.bin` stores (in file order)
and the scratch values ncnn allocates while it runs.

Why a module of its own: the `.bin` reader and writer (ncnn_files.py) frame the file by the weight
layouts, the analysis counts multiply-adds from the tagged ones, and the planner's memory model
(plan/memory.py) adds the scratch to the blobs; each entry of layers.py names its rules here
(`<type>_weights`, `<type>_scratch`).
"""

from __future__ import annotations

from collections.abc import Callable

from .params import Params

WeightsRule = Callable[[Params], "list[tuple[int, bool]] | None"]  # None: storage not supported
ScratchRule = Callable[[Params], "tuple[float, float]"]  # scratch values per bottom value, per top value


def no_weights(p: Params) -> list[tuple[int, bool]]:
    return []


def no_scratch(p: Params) -> tuple[float, float]:
    return 0.0, 0.0


def conv_weights(p: Params) -> list[tuple[int, bool]] | None:
    if p.i(8, 0):
        return None  # int8-quantised weights
    return [(p.i(6, 0), True)] + ([(p.i(0, 0), False)] if p.i(5, 0) else [])


def conv_scratch(p: Params) -> tuple[float, float]:
    """A spatial kernel: ncnn pads a copy of the input (1x) and a 3x3 kernel runs Winograd F(6,3)
    on transformed copies of input and output (~1.8x each); a 1x1 kernel multiplies the blobs as
    they are (measured: tests/test_memory_model.py). Deconvolutions and depthwise kernels take the
    same rule, not measured separately."""
    kw = p.i(1, 0)
    return (2.8, 1.8) if max(kw, p.i(11, kw)) > 1 else (0.0, 0.0)


def per_channel(arrays: int) -> WeightsRule:
    return lambda p: [(p.i(0, 0), False)] * arrays


def innerproduct_weights(p: Params) -> list[tuple[int, bool]] | None:
    if p.i(8, 0):
        return None
    return [(p.i(2, 0), True)] + ([(p.i(0, 0), False)] if p.i(1, 0) else [])


def memorydata_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(0, 0) * p.i(1, 0) * p.i(2, 0), p.i(21, 1) == 0)]


def padding_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(6, 0), False)] if p.i(6, 0) else []


def layernorm_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(0, 0), False)] * 2 if p.i(2, 1) else []
