"""Validate an ncnn graph before ncnn sees it, so an edited `.param` is refused with one line.

Why: ncnn trusts its `.param`. A PReLU with 64 slopes on a 3-channel blob, a convolution whose
weight count does not match its input channels, `4=2147483647` (pad), a float written where ncnn
reads an int, an unknown layer type, or `19=1` (weights from a second input) make it read out of
bounds: SIGSEGV or SIGFPE, no message, and the Python process (CLI or `Upscaler`) dies with it.
A child process per model load was measured as the alternative (see the README); checking the
graph here costs about a millisecond and protects running as well as loading.

What is checked: every layer type is one this runtime knows, with only the parameter ids that
type accepts, each an int or a float as ncnn reads it and within a sane range; blobs are
produced once, before they are read, read once (ncnn needs a Split to share one), and counted
as the header says; shapes (channels and size) are carried through the graph from the input's
channels on a small probe size, so every layer sees the channel count its weights were made for,
and the output must be the spec's scale and channel count on every path.

Per-type knowledge (parameters, shape rules, what a layer divides sizes by) is read from the one
layer table, graph/layers.py; this module holds the graph-wide rules only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .layers import LAYER_KINDS, LayerKind, output_shapes, typed
from .ncnn_files import NcnnFormatError, NcnnLayer, NcnnParam
from .params import GraphError, Params, fail
from .shape_rules import Shape

MAX_VALUES_PER_PIXEL = 1 << 20  # activations per input pixel at any blob (x4plus's head: 1024)


def probe_sides(tile_pad: int, size_multiple: int) -> tuple[int, int]:
    """Input sides to check: the smallest padded tile the tiler can make (a 1 px image), and a
    larger one, so a graph that is right at one size only (valid convs, odd resizes) shows."""
    smallest = -(-(1 + 2 * tile_pad) // size_multiple) * size_multiple
    return smallest, smallest + 3 * size_multiple


def check_graph(param: str | NcnnParam, in_channels: int, input_blob: str, output_blob: str,
                scale: int | None = None, out_channels: int | None = None,
                sides: tuple[int, ...] = (8, 11), kinds: Mapping[str, LayerKind] = LAYER_KINDS,
                pre_pad: int = 0) -> Shape:
    """Refuse a graph ncnn would crash on; returns the output shape for an input of `sides[0]` px.

    `param` is the `.param` text or its parse (a caller that parsed it once passes the parse).
    With `scale`/`out_channels` the output must be that many channels at that scale for every
    probe side (the sidecar's claim, checked before any tile runs, whichever path runs it).
    `pre_pad`: pixels per side the graph's valid convolutions consume (RealCUGAN); a side s is
    then probed as s + 2 * pre_pad and must give scale * s.
    """
    if isinstance(param, str):
        try:
            param = NcnnParam.parse(param)
        except NcnnFormatError as exc:
            raise GraphError(str(exc)) from None
    inputs = [layer for layer in param.layers if layer.type == "Input"]
    if [layer.tops for layer in inputs] != [[input_blob]]:
        raise GraphError(f"the graph needs exactly one Input layer producing {input_blob!r}")
    layers = [(layer, typed(layer, kinds)) for layer in param.layers]  # ids, types, ranges: once
    # Sides the graph itself divides (pixel-unshuffle, strides): a sidecar that forgets its
    # size_multiple gets wrong-sized tiles refused at run time, not a crash; probe valid sizes.
    multiple = math.lcm(*(kinds[layer.type].divisor(params) for layer, params in layers))
    sides = tuple(-(-side // multiple) * multiple for side in sides)
    declared = param.blob_count if param.declared_blobs is None else param.declared_blobs
    results = [_check_at(layers, kinds, declared, side, pre_pad, in_channels, output_blob, scale, out_channels)
               for side in sides]
    return results[0]


def _check_at(layers: list[tuple[NcnnLayer, Params]], kinds: Mapping[str, LayerKind], declared: int, side: int,
              pre_pad: int, in_channels: int, output_blob: str, scale: int | None, out_channels: int | None) -> Shape:
    shapes = shapes_at(layers, kinds, side + 2 * pre_pad, in_channels)
    if not len(shapes) <= declared <= 4 * len(shapes) + 64:  # ncnn sizes its blob table from the header
        raise GraphError(f"the header declares {declared} blobs but the layers make {len(shapes)}")
    out = shapes.get(output_blob)
    if out is None:
        raise GraphError(f"output blob {output_blob!r} is not made by any layer")
    if scale is not None and (out.h, out.w) != (side * scale, side * scale):
        padded = f" (pre-padded by {pre_pad})" if pre_pad else ""
        raise GraphError(f"the graph turns a {side}x{side} input{padded} into {out.w}x{out.h}, not x{scale} as the sidecar says")
    if out_channels is not None and out.c != out_channels:
        raise GraphError(f"the graph outputs {out.c} channels, the sidecar says {out_channels}")
    return out


def shapes_at(layers: list[tuple[NcnnLayer, Params]], kinds: Mapping[str, LayerKind], side: int,
              in_channels: int) -> dict[str, Shape]:
    """Every blob's shape for a side x side input, checking each layer on the way (GraphError)."""
    shapes: dict[str, Shape] = {}
    consumed: set[str] = set()
    for layer, params in layers:
        _check_layer(layer, kinds[layer.type], params, shapes, consumed, in_channels, side)
    return shapes


def _check_layer(layer: NcnnLayer, kind: LayerKind, params: Params, shapes: dict[str, Shape], consumed: set[str],
                 in_channels: int, side: int) -> None:
    ins = []
    for blob in layer.bottoms:
        if blob not in shapes:
            raise fail(layer.name, f"reads blob {blob!r} before any layer makes it")
        if blob in consumed:
            raise fail(layer.name, f"blob {blob!r} is read twice (ncnn needs a Split to share a blob)")
        consumed.add(blob)
        ins.append(shapes[blob])
    if layer.type == "Input":
        if params.i(2, 0) not in (0, in_channels):
            raise fail(layer.name, f"input of {params.i(2, 0)} channels, the model spec says {in_channels}")
        outs = [Shape(in_channels, side, side)]
    else:
        outs = output_shapes(kind, params, ins, layer.name)[: len(layer.tops)]
    for blob, shape in zip(layer.tops, outs):
        if blob in shapes:
            raise fail(layer.name, f"blob {blob!r} is made twice")
        if shape.c * shape.h * shape.w > MAX_VALUES_PER_PIXEL * side * side:
            raise fail(layer.name, f"blob {blob!r} would hold {shape.c}x{shape.h}x{shape.w} values for a {side}x{side} input")
        shapes[blob] = shape
