"""The one table of ncnn layer types this runtime accepts: everything known about a type, in its entry.

Why one table: the validator (check.py), the graph analysis (analysis.py, halos and resolutions),
the segment planner (plan/segments.py, through the analysis) and the `.bin` reader (ncnn_files.py)
each need per-type knowledge. Written once per consumer, the lists drifted (a type could be
"tileable" but never accepted). Here a `LayerKind` holds, per type: its parameter ids with their
type and range, its blob counts, its shape rule, its geometry (resolution factor and context, the
halo rule), its `.bin` weight layout, what it divides input sizes by, and its locality. Adding a
layer type is one entry; tests/test_layer_table.py proves every consumer follows the entry.

This module is the table and the typing of one layer by its entry (`kind_of`, `typed`,
`output_shapes`); the rules an entry names live in shape_rules.py, geometry_rules.py and
storage_rules.py, and the parameter parsing in params.py.

The C++ validator (deploy/src/layers.cpp) holds the same entries; tests/test_deploy_fuzz.py
compares the two tables entry for entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .geometry_rules import (GeometryRule, LocalityRule, always, axis_locality, channel_axis, conv_divisor, conv_geometry,
                             crop_geometry, deconv_geometry, interp_geometry, opaque_geometry, padding_geometry,
                             pointwise_geometry, pool_locality, reorg_geometry, shuffle_geometry, undivided)
from .params import FINITE, MAX_BLOBS_PER_LAYER, MAX_NAME, Params, RawLayer, fail, parse_params
from .shape_rules import (Shape, ShapeRule, batchnorm_shape, binary_shape, clip_shape, concat_shape, conv_shape, crop_shape,
                          deconv_shape, eltwise_shape, innerproduct_shape, interp_shape, layernorm_shape, memorydata_shape,
                          padding_shape, permute_shape, pixelshuffle_shape, pool_shape, prelu_shape, reorg_shape,
                          reshape_shape, same_shape, slice_shape, softmax_shape, split_shape)
from .storage_rules import (ScratchRule, WeightsRule, conv_scratch, conv_weights, innerproduct_weights, layernorm_weights,
                            memorydata_weights, no_scratch, no_weights, padding_weights, per_channel)


@dataclass(frozen=True)
class LayerKind:
    """What ncnn accepts for one layer type, and what it does to pixels and the `.bin`.

    ints/floats: parameter id -> inclusive (low, high); arrays / int_arrays: array id -> longest
    length (of floats / of ints). bottoms/tops: inclusive (min, max) blob counts. shape: output
    shapes from input shapes; flat: it also takes flat (1-D) blobs, else image blobs only.
    geometry: resolution factor and context (None: not tileable). weights: (count, tagged)
    arrays stored in the `.bin`, in order. divisor: what the layer divides input sizes by.
    locality: pointwise, local (a window) or global (reads the whole image), from the params.
    copies: every top carries the bottom's value unchanged (the planner stores it once).
    scratch: the values ncnn allocates beside the blobs while the layer runs, per value of its
    bottoms and of its tops (plan/memory.py turns them into bytes).
    """

    shape: ShapeRule
    ints: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    floats: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    arrays: Mapping[int, int] = field(default_factory=dict)
    bottoms: tuple[int, int] = (1, 1)
    tops: tuple[int, int] = (1, 1)
    geometry: GeometryRule = pointwise_geometry
    weights: WeightsRule = no_weights
    divisor: Callable[[Params], int] = undivided
    locality: LocalityRule = always("pointwise")
    int_arrays: Mapping[int, int] = field(default_factory=dict)
    flat: bool = False
    copies: bool = False  # every top is a copy of the one bottom (Split)
    scratch: ScratchRule = no_scratch


_SIZE = (0, 1 << 16)
_CONV_INTS = {0: (1, 8192), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: (1, 16), 13: (1, 16),
              4: (-234, 256), 14: (-234, 256), 15: (-234, 256), 16: (-234, 256), 5: (0, 1), 6: (1, 1 << 30),
              8: (0, 0), 9: (0, 6), 19: (0, 0)}
_PAD = (0, 256)
_DECONV_INTS = {0: (1, 8192), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: (1, 16), 13: (1, 16),
                4: _PAD, 14: _PAD, 15: _PAD, 16: _PAD, 18: (0, 16), 19: (0, 16), 5: (0, 1), 6: (1, 1 << 30),
                9: (0, 6)}
_DECONV = dict(shape=deconv_shape, arrays={10: 2}, geometry=deconv_geometry, weights=conv_weights,
               locality=always("local"), scratch=conv_scratch)
_CONV = dict(shape=conv_shape, floats={18: FINITE}, arrays={10: 2}, geometry=conv_geometry, weights=conv_weights,
             divisor=conv_divisor, locality=always("local"), scratch=conv_scratch)

LAYER_KINDS: Mapping[str, LayerKind] = MappingProxyType({
    "Input": LayerKind(same_shape, ints={0: _SIZE, 1: _SIZE, 11: _SIZE, 2: _SIZE}, bottoms=(0, 0)),
    "Convolution": LayerKind(ints=_CONV_INTS, **_CONV),  # type: ignore[arg-type]
    "ConvolutionDepthWise": LayerKind(ints={**_CONV_INTS, 7: (1, 8192)}, **_CONV),  # type: ignore[arg-type]
    "PReLU": LayerKind(prelu_shape, ints={0: (1, 8192)}, weights=per_channel(1)),
    "ReLU": LayerKind(same_shape, floats={0: FINITE}, flat=True),
    "Sigmoid": LayerKind(same_shape, flat=True),
    "TanH": LayerKind(same_shape, flat=True),
    "Clip": LayerKind(clip_shape, floats={0: FINITE, 1: FINITE}, flat=True),
    "Noop": LayerKind(same_shape, flat=True),
    "Dropout": LayerKind(same_shape, floats={0: FINITE}, flat=True),
    "BatchNorm": LayerKind(batchnorm_shape, ints={0: (1, 8192)}, floats={1: FINITE}, weights=per_channel(4)),
    "Split": LayerKind(split_shape, tops=(1, MAX_BLOBS_PER_LAYER), copies=True, flat=True),
    "Concat": LayerKind(concat_shape, ints={0: (0, 0)}, bottoms=(1, MAX_BLOBS_PER_LAYER)),
    "Eltwise": LayerKind(eltwise_shape, ints={0: (0, 2)}, arrays={1: MAX_BLOBS_PER_LAYER}, bottoms=(2, MAX_BLOBS_PER_LAYER),
                         flat=True),
    "BinaryOp": LayerKind(binary_shape, ints={0: (0, 11), 1: (0, 1)}, floats={2: FINITE}, bottoms=(1, 2), flat=True),
    "Interp": LayerKind(interp_shape, ints={0: (1, 3), 3: _SIZE, 4: _SIZE, 5: (0, 0), 6: (0, 1)},
                        floats={1: (1 / 16, 16.0), 2: (1 / 16, 16.0)}, geometry=interp_geometry, locality=always("local")),
    "PixelShuffle": LayerKind(pixelshuffle_shape, ints={0: (1, 16), 1: (0, 1)}, geometry=shuffle_geometry),
    "MemoryData": LayerKind(memorydata_shape, ints={0: _SIZE, 1: _SIZE, 2: (0, 8192), 21: (0, 1)}, bottoms=(0, 0),
                            weights=memorydata_weights),
    "Swish": LayerKind(same_shape, flat=True),
    "GELU": LayerKind(same_shape, ints={0: (0, 1)}, flat=True),
    "HardSwish": LayerKind(same_shape, floats={0: FINITE, 1: FINITE}, flat=True),
    "Mish": LayerKind(same_shape, flat=True),
    "Deconvolution": LayerKind(ints=_DECONV_INTS, **_DECONV),  # type: ignore[arg-type]
    "DeconvolutionDepthWise": LayerKind(ints={**_DECONV_INTS, 7: (1, 8192)}, **_DECONV),  # type: ignore[arg-type]
    "Crop": LayerKind(crop_shape, int_arrays={9: 3, 10: 3, 11: 3}, geometry=crop_geometry, locality=always("local")),
    "Pooling": LayerKind(pool_shape, ints={0: (0, 1), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: _PAD, 13: _PAD,
                                           14: _PAD, 15: _PAD, 4: (0, 1), 5: (0, 1), 6: (0, 1), 7: (0, 0)},
                         geometry=opaque_geometry, locality=pool_locality,
                         divisor=lambda p: 1 if p.i(4, 0) else p.i(2, 1)),
    "InnerProduct": LayerKind(innerproduct_shape, ints={0: (1, 8192), 1: (0, 1), 2: (1, 1 << 30), 8: (0, 0), 9: (0, 6)},
                              arrays={10: 2}, geometry=opaque_geometry, weights=innerproduct_weights,
                              locality=always("global"), flat=True),
    "Padding": LayerKind(padding_shape, ints={0: _PAD, 1: _PAD, 2: _PAD, 3: _PAD, 4: (0, 2), 6: (0, 8192)},
                         floats={5: FINITE}, geometry=padding_geometry, weights=padding_weights,
                         locality=always("local")),
    "Reshape": LayerKind(reshape_shape, ints={0: (-233, 1 << 24), 1: (-233, 1 << 16), 2: (-233, 1 << 16)},
                         geometry=opaque_geometry, locality=always("global"), flat=True),
    "Permute": LayerKind(permute_shape, ints={0: (0, 5)}, geometry=opaque_geometry, locality=always("global")),
    "Slice": LayerKind(slice_shape, ints={1: (-3, 2)}, int_arrays={0: MAX_BLOBS_PER_LAYER}, tops=(1, MAX_BLOBS_PER_LAYER),
                       geometry=channel_axis(1), locality=axis_locality(1), flat=True),
    "Softmax": LayerKind(softmax_shape, ints={0: (-3, 2), 1: (0, 1)}, geometry=channel_axis(0),
                         locality=axis_locality(0), flat=True),
    "LayerNorm": LayerKind(layernorm_shape, ints={0: (1, 1 << 24), 2: (0, 1)}, floats={1: (0.0, 1.0)},
                           geometry=opaque_geometry, weights=layernorm_weights, locality=always("global"),
                           flat=True),
    "Reorg": LayerKind(reorg_shape, ints={0: (1, 16), 1: (0, 1)}, geometry=reorg_geometry,
                       divisor=lambda p: p.i(0, 1)),
})


def kind_of(layer: RawLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> LayerKind:
    """The layer's entry; GraphError for a type the table does not hold."""
    kind = kinds.get(layer.type)
    if kind is None:
        raise fail(layer.name, f"unknown layer type {layer.type[:40]!r} (known: {', '.join(sorted(kinds))})")
    return kind


def typed(layer: RawLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> Params:
    """A layer's parameters after every check that does not depend on shapes: known type, name
    lengths, blob counts, parameter ids, types and ranges."""
    kind = kind_of(layer, kinds)
    for blob in (layer.name, *layer.bottoms, *layer.tops):
        if len(blob) > MAX_NAME:
            raise fail(layer.name[:40], f"name longer than {MAX_NAME} characters")
    for label, count, (lo, hi) in (("inputs", len(layer.bottoms), kind.bottoms), ("outputs", len(layer.tops), kind.tops)):
        if not lo <= count <= hi:
            raise fail(layer.name, f"{layer.type} takes {lo}..{hi} {label}, got {count}")
    return parse_params(layer, kind)


def output_shapes(kind: LayerKind, params: Params, ins: list[Shape], name: str) -> list[Shape]:
    """The layer's output shapes by its entry; an image-only entry refuses flat (1-D) inputs."""
    if not kind.flat and any(x.dims != 3 for x in ins):
        raise fail(name, "needs image blobs, got a flat vector")
    return kind.shape(params, ins, name)
