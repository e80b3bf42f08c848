"""The `.param` graph as a typed DAG: resolution, shape and receptive field of every blob.

Why: exact tiling needs, for any stretch of layers, how many pixels of context its inputs must
carry so that an output region comes out as in the untiled run. That follows from each layer's
geometry (kernel, dilation, stride, padding, interpolation), never from an architecture name.
Each layer's geometry, shape and weights come from its entry in the one layer table (layers.py); a
type the table does not hold, or an entry without geometry, is "opaque": any stretch containing it
cannot be tiled and runs whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

from .geometry_rules import ONE, Factor, Geometry
from .layers import LAYER_KINDS, LayerKind, output_shapes, typed
from .ncnn_files import NcnnLayer, NcnnParam
from .params import GraphError, Params
from .shape_rules import Shape

__all__ = ["Graph", "PROBE_SIDE", "layer_geometry"]

PROBE_SIDE = 96  # input side at which blob shapes (channels) are followed; rounded to the graph's divisor


def layer_geometry(layer: NcnnLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> Geometry | None:
    """The geometry of one layer from its table entry, or None when it is not known to be tileable
    (a type the table does not hold, or parameters the table refuses)."""
    try:
        params = typed(layer, kinds)
    except GraphError:
        return None
    return kinds[layer.type].geometry(params, len(layer.bottoms))


class Graph:
    """A `.param` as a DAG in file (topological) order, with per-blob resolution and channels.

    `factor[blob]` is None downstream of an opaque layer or where inputs disagree in resolution.
    """

    def __init__(self, param: NcnnParam, in_channels: int = 3, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> None:
        self.layers = param.layers
        self.kinds = kinds
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.params: list[Params | None] = []  # None: a layer the table refuses (opaque)
        self.geometry: list[Geometry | None] = []
        self.factor: dict[str, Factor | None] = {}
        self.aligned: dict[str, bool] = {}  # on the input's grid (geometry_rules.py `Geometry.aligned`): storable
        self.shapes: dict[str, Shape | None] = {}  # at a probe_side input, None where unknown
        self.shapes2: dict[str, Shape | None] = {}  # at a larger probe side (sides[1])
        for layer in self.layers:
            try:
                self.params.append(typed(layer, kinds))
            except GraphError:
                self.params.append(None)
        multiple = math.lcm(*(kinds[layer.type].divisor(p) for layer, p in zip(self.layers, self.params) if p is not None))
        self.probe_side = -(-PROBE_SIDE // multiple) * multiple
        self.sides = (self.probe_side, self.probe_side + 4 * multiple)
        for index, layer in enumerate(self.layers):
            for blob in layer.bottoms:
                self.consumers.setdefault(blob, []).append(index)
            params = self.params[index]
            geometry = None if params is None else kinds[layer.type].geometry(params, len(layer.bottoms))
            # Per-channel vectors (global pooling, InnerProduct, 1x1 constants) broadcast over an
            # image: the image bottoms alone set the resolution.
            images = [b for b in layer.bottoms if not self.vector(b)]
            factors = {self.factor.get(b) for b in images}
            if len(factors) > 1 or None in factors or layer.bottoms and not images:
                geometry = None  # mixed resolutions, unknown input, or vectors only
            self.geometry.append(geometry)
            base = ONE if not layer.bottoms else next(iter(factors), None)
            out = None if geometry is None or base is None else (base[0] * geometry.factor[0], base[1] * geometry.factor[1])
            shapes = self._shapes(layer, params, in_channels, self.sides[0], self.shapes)
            shapes2 = self._shapes(layer, params, in_channels, self.sides[1], self.shapes2)
            for blob, shape, shape2 in zip(layer.tops, shapes, shapes2):
                self.producer[blob] = index
                self.shapes[blob], self.shapes2[blob] = shape, shape2
                if self.vector(blob) and layer.type != "Input":
                    self.factor[blob] = None
                else:
                    self.factor[blob] = out if out is not None else self._measured(shape, shape2)
                # Behind an opaque layer the measured size stands for the grid (as for `factor`);
                # a trimmed blob that comes back to exactly factor x the input is on it again.
                grid = geometry is None or geometry.aligned and all(self.aligned.get(b, True) for b in images)
                self.aligned[blob] = out is None or grid or self._measured(shape, shape2) == out
        self.channels: dict[str, int | None] = {b: None if s is None else s.c for b, s in self.shapes.items()}

    def _measured(self, shape: Shape | None, shape2: Shape | None) -> Factor | None:
        """Behind an opaque layer, a blob whose size is an exact multiple of the input's at both
        probe sides (a padding undone by a valid convolution, say) still has that resolution:
        later segments can start from it."""
        if shape is None or shape2 is None:
            return None
        b, (fy, fx) = self.sides[1], (Fraction(shape.h, self.sides[0]), Fraction(shape.w, self.sides[0]))
        return (fy, fx) if (Fraction(shape2.h, b), Fraction(shape2.w, b)) == (fy, fx) else None

    def _shapes(self, layer: NcnnLayer, params: Params | None, in_channels: int, side: int,
                known: dict[str, Shape | None]) -> list[Shape | None]:
        """The layer's output shapes by its table's shape rule (None where an input is unknown)."""
        unknown: list[Shape | None] = [None] * len(layer.tops)
        if params is None:
            return unknown
        if layer.type == "Input":
            return [Shape(in_channels, side, side)]
        ins = [known.get(b) for b in layer.bottoms]
        if any(s is None for s in ins):
            return unknown
        try:
            outs = output_shapes(self.kinds[layer.type], params, ins, layer.name)  # type: ignore[arg-type]
        except GraphError:
            return unknown
        return [*outs[: len(layer.tops)], *unknown[len(outs):]]

    @classmethod
    def from_text(cls, text: str, in_channels: int = 3, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> "Graph":
        return cls(NcnnParam.parse(text), in_channels, kinds)

    def root(self, blob: str) -> str:
        """The blob whose value `blob` carries (Split outputs are copies of the Split's input)."""
        while blob in self.producer and self._copies(self.layers[self.producer[blob]]):
            blob = self.layers[self.producer[blob]].bottoms[0]
        return blob

    def global_layers(self) -> tuple[str, ...]:
        """Names of the layers that read the whole image (their table entry's locality)."""
        return tuple(layer.name for layer, params in zip(self.layers, self.params)
                     if params is not None and self.kinds[layer.type].locality(params) == "global")

    def vector(self, blob: str) -> bool:
        """A blob without an image's resolution: flat, or 1x1 at the probe side (a constant)."""
        shape = self.shapes.get(blob)
        return shape is not None and (shape.dims != 3 or (shape.h, shape.w) == (1, 1))

    def _copies(self, layer: NcnnLayer) -> bool:
        kind = self.kinds.get(layer.type)
        return kind is not None and kind.copies

    def live(self, position: int, outputs: tuple[str, ...]) -> list[str]:
        """Blobs made at or before layer `position` and still needed after it (or net outputs)."""
        return [
            blob for index in range(position + 1) for blob in self.layers[index].tops
            if any(c > position for c in self.consumers.get(blob, [])) or blob in outputs
        ]

    def margins(self, start: int, stop: int, need: dict[str, tuple[int, int, int, int]],
                spatial_only: bool = False) -> dict[str, tuple[int, int, int, int]] | None:
        """Margins (top, bottom, left, right), in each blob's own pixels, that layers start+1..stop
        need on their blobs so that the regions of `need` (blob -> margin) come out exact.
        None when one of those layers is opaque. `spatial_only`: per-channel vectors (what global
        pooling makes) get no margin, so the layers that make them are not followed."""
        margin = dict(need)
        for index in range(stop, start, -1):
            layer = self.layers[index]
            wanted = [margin[t] for t in layer.tops if t in margin]
            if not wanted:
                continue
            geometry = self.geometry[index]
            if geometry is None:
                return None
            top_margin = tuple(max(m[i] for m in wanted) for i in range(4))
            below = geometry.bottom_margin(top_margin)  # type: ignore[arg-type]
            for blob in layer.bottoms:
                if spatial_only and self.vector(blob):
                    continue
                old = margin.get(blob, below)  # negative where a crop skips pixels: kept
                margin[blob] = tuple(max(a, b) for a, b in zip(old, below))  # type: ignore[assignment]
        return margin

    def net_context(self, input_blob: str, output_blob: str, pre_pad: int = 0) -> int | None:
        """Input pixels of real context per tile side that make every output pixel of a tile's
        centre exact when the whole net runs on tiles of the unpadded image (origins on multiples
        of `stride()`). Counts the pre-padding a border-eating graph consumes (RealCUGAN: its
        runner mirrors `pre_pad` px around each tile, garbage at interior cuts that the context
        covers). None where a layer on the way is opaque. A graph that reads the whole image
        (`global_layers`: squeeze-excitation's pooled vectors) gets the context of its local
        layers: no context makes its tiles exact, this one leaves only the global part's error."""
        margins = self.margins(0, len(self.layers) - 1, {output_blob: (0, 0, 0, 0)}, spatial_only=True)
        if margins is None or input_blob not in margins:
            return None
        top, bottom, left, right = margins[input_blob]
        return max(top + pre_pad, bottom - pre_pad, left + pre_pad, right - pre_pad, 0)

    def stride(self) -> int:
        """The multiple that tile origins must fall on so every strided layer sees the same grid
        as in the whole run (4 after two stride-2 convolutions)."""
        return math.lcm(1, *(f.denominator for factor in self.factor.values() if factor is not None for f in factor))

    def macs_per_pixel(self, start: int, stop: int) -> float:
        """Multiply-adds per net-input pixel of layers start+1..stop: each weight matrix (the tagged
        arrays of the layer's `.bin` layout) once per pixel at the lower of its input's and
        output's resolutions (a convolution's output, a deconvolution's input)."""
        total = 0.0
        for index in range(start + 1, stop + 1):
            layer, params = self.layers[index], self.params[index]
            if params is None:
                continue
            layout = self.kinds[layer.type].weights(params) or []
            weights = sum(count for count, tagged in layout if tagged)
            if not weights:
                continue
            areas = [self.factor.get(b) or ONE for b in (*layer.bottoms, *layer.tops)]
            total += weights * min(float(f[0] * f[1]) for f in areas)
        return total
