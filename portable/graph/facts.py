"""What the runtime needs to know about a model, read from its graph alone (no sidecar).

Why: a foreign `.param` (SPAN, RealCUGAN, a community ESRGAN) comes without the project's sidecar.
Its input and output blobs, scale, channels, the pre-padding its valid convolutions consume, the
input sides it accepts and whether it reads the whole image somewhere all follow from the graph:
the blobs from the layer lines, the rest from the layer table's shape rules at a few probe sides
(so the scale comes out of PixelShuffle, Interp, Deconvolution strides or anything else the
table knows, without naming them). RealCUGAN x2/x3/x4 come out as 18/14/19 px of pre-padding
and sides multiple of 2/4/2, as its own runner (realcugan-ncnn-vulkan) hard-codes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .check import shapes_at
from .layers import LAYER_KINDS, LayerKind, typed
from .ncnn_files import NcnnLayer, NcnnParam
from .params import GraphError

PROBE = (96, 112)  # input sides (multiples of every size_multiple tried) that give scale and offset
MULTIPLES = (1, 2, 4, 8, 16)
CONTENT = 48  # smallest unpadded side tried for the size multiple


@dataclass(frozen=True)
class GraphFacts:
    """A graph's own answers to what a sidecar would say.

    pre_pad: mirrored pixels per side the runtime adds around the input, which the graph's valid
    convolutions consume (the output is then exactly scale x the unpadded input).
    size_multiple: unpadded input sides must be multiples of this.
    global_layers: layers that read the whole image (global pooling, SE blocks, attention over
    all pixels): tiles of such a graph are not exact, only close.
    """

    input_blob: str
    output_blob: str
    in_channels: int
    out_channels: int
    scale: int
    pre_pad: int
    size_multiple: int
    global_layers: tuple[str, ...]

    @property
    def has_global(self) -> bool:
        return bool(self.global_layers)


def _single_input(param: NcnnParam) -> NcnnLayer:
    inputs = [layer for layer in param.layers if layer.type == "Input"]
    if len(inputs) != 1 or len(inputs[0].tops) != 1:
        raise GraphError(f"the graph has {len(inputs)} Input layers; one with one blob is needed")
    return inputs[0]


def _single_output(param: NcnnParam) -> str:
    consumed = {blob for layer in param.layers for blob in layer.bottoms}
    ends = [blob for layer in param.layers for blob in layer.tops if blob not in consumed]
    if len(ends) != 1:
        raise GraphError(f"the graph ends in {len(ends)} blobs ({', '.join(ends[:4])}); one output is needed")
    return ends[0]


def graph_facts(param: NcnnParam, in_channels: int | None = None,
                kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> GraphFacts:
    """Blobs, channels, scale, pre-padding, size multiple and global layers of a graph; GraphError
    (one line) when the graph does not upscale an image by a whole factor at any input size.

    `in_channels` is used when the Input layer does not state its channels (3 when None)."""
    input_layer = _single_input(param)
    output = _single_output(param)
    layers = [(layer, typed(layer, kinds)) for layer in param.layers]
    stated = next(params for layer, params in layers if layer is input_layer)
    channels = stated.i(2, 0) or in_channels or 3
    heights = []
    for side in PROBE:
        out = shapes_at(layers, kinds, side, channels).get(output)
        if out is None or out.dims != 3 or out.h != out.w:
            raise GraphError(f"output blob {output!r} is not a square image for a {side}x{side} input")
        heights.append(out.h)
    step = PROBE[1] - PROBE[0]
    scale, rest = divmod(heights[1] - heights[0], step)
    offset = heights[0] - scale * PROBE[0]
    if rest or scale < 1 or offset > 0 or offset % (2 * scale):
        raise GraphError(f"the graph turns {PROBE[0]} and {PROBE[1]} px into {heights[0]} and {heights[1]} px: "
                         "not a whole upscale of a (pre-padded) input")
    pre_pad = -offset // (2 * scale)
    multiple = next((m for m in MULTIPLES if _exact(layers, kinds, output, channels, scale, pre_pad, m)), None)
    if multiple is None:
        raise GraphError(f"no input side multiple of up to {MULTIPLES[-1]} gives exactly x{scale}")
    out_channels = shapes_at(layers, kinds, PROBE[0], channels)[output].c
    global_layers = tuple(layer.name for layer, p in layers if kinds[layer.type].locality(p) == "global")
    return GraphFacts(input_layer.tops[0], output, channels, out_channels, scale, pre_pad, multiple, global_layers)


def _exact(layers: list, kinds: Mapping[str, LayerKind], output: str, channels: int, scale: int, pre_pad: int,
           multiple: int) -> bool:
    """Every unpadded side of this multiple (four in a row) comes out exactly scale times larger."""
    for k in range(4):
        side = CONTENT + k * multiple
        try:
            out = shapes_at(layers, kinds, side + 2 * pre_pad, channels).get(output)
        except GraphError:
            return False
        if out is None or (out.h, out.w) != (scale * side, scale * side):
            return False
    return True
