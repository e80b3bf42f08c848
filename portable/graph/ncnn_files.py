"""Read and write ncnn `.param` text and `.bin` weights without torch.

Why here: the runtime blends two weight files (denoise strength) and `convert/` both imports the
official ncnn-only weights into PyTorch and writes ncnn files directly from a state_dict. All three
need the same knowledge of how ncnn lays weights out in a `.bin`, so it lives in one torch-free
module. Which arrays a layer stores is its entry's `weights` rule in the one layer table
(layers.py); this module owns the `.param` text format and the `.bin` framing.

Layout (ncnn `ModelBin`): each layer with weights stores its arrays in order. A *tagged* array
("type 0", convolution and inner-product weights) starts with a 4-byte tag: 0 means raw fp32 follows,
0x01306B47 means fp16 follows (padded to 4 bytes). An *untagged* array ("type 1": biases, PReLU
slopes, BatchNorm statistics) is raw fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import UserError
from .layers import LAYER_KINDS, LayerKind
from .params import GraphError, parse_params

PARAM_MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0
_TAG_BYTES = 4


class NcnnFormatError(UserError, ValueError):
    """A `.param` or `.bin` is malformed, or the two do not belong together."""


@dataclass
class NcnnLayer:
    """One line of a `.param` file; `params` maps the numeric id (arrays negative) to its text."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        raw = self.params.get(key)
        if raw is None:
            return default
        try:
            return int(float(raw))
        except (ValueError, OverflowError):  # "abc", "nan"; "inf" and "1e400" overflow int()
            raise NcnnFormatError(f"layer {self.name}: param {key}={raw[:40]!r} is not a number (or not finite)") from None

    def to_line(self) -> str:
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        parts = [head, *self.bottoms, *self.tops, *(f"{k}={v}" for k, v in self.params.items())]
        return " ".join(parts)


@dataclass
class NcnnParam:
    """A parsed `.param`: the layers in file order, and the blob count its header declares
    (ncnn sizes its blob table from it; None for a graph built in code)."""

    layers: list[NcnnLayer]
    declared_blobs: int | None = None

    @property
    def blob_count(self) -> int:
        return len({blob for layer in self.layers for blob in layer.tops})

    @classmethod
    def parse(cls, text: str) -> "NcnnParam":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines or lines[0] != str(PARAM_MAGIC):
            raise NcnnFormatError("not an ncnn .param file (missing magic number 7767517)")
        try:
            layer_count, blob_count = (int(v) for v in lines[1].split())
        except (IndexError, ValueError):
            raise NcnnFormatError("ncnn .param: bad layer/blob count line") from None
        body = lines[2:]
        if len(body) != layer_count:
            raise NcnnFormatError(f"ncnn .param declares {layer_count} layers but has {len(body)}")
        return cls([_parse_layer(line, number) for number, line in enumerate(body, start=3)], blob_count)

    def to_text(self) -> str:
        head = [str(PARAM_MAGIC), f"{len(self.layers)} {self.blob_count}"]
        return "\n".join(head + [layer.to_line() for layer in self.layers]) + "\n"


def _parse_layer(line: str, number: int) -> NcnnLayer:
    tokens = line.split()
    try:
        layer_type, name = tokens[0], tokens[1]
        n_bottom, n_top = int(tokens[2]), int(tokens[3])
    except (IndexError, ValueError):
        raise NcnnFormatError(f"ncnn .param line {number}: malformed layer header") from None
    blobs_end = 4 + n_bottom + n_top
    if len(tokens) < blobs_end:
        raise NcnnFormatError(f"ncnn .param line {number}: layer {name} lists too few blobs")
    params: dict[int, str] = {}
    for token in tokens[blobs_end:]:
        key, sep, value = token.partition("=")
        try:
            params[int(key)] = value
        except ValueError:
            sep = ""
        if not sep:
            raise NcnnFormatError(f"ncnn .param line {number}: bad parameter {token!r}")
    return NcnnLayer(layer_type, name, tokens[4 : 4 + n_bottom], tokens[4 + n_bottom : blobs_end], params)


def array_layout(layer: NcnnLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> list[tuple[int, bool]]:
    """The arrays a layer stores in the `.bin`: (element count, tagged) in file order, from the
    layer table's entry (a type the table does not hold stores nothing)."""
    kind = kinds.get(layer.type)
    if kind is None:
        return []
    try:
        layout = kind.weights(parse_params(layer, kind))
    except GraphError as exc:
        raise NcnnFormatError(str(exc)) from None
    if layout is None:
        raise NcnnFormatError(f"layer {layer.name}: int8-quantised weights are not supported")
    return layout


@dataclass
class _StoredArray:
    layer: str
    data: np.ndarray  # float32, flat
    tagged: bool
    fp16: bool


def _scan(param: NcnnParam, bin_bytes: bytes, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> Iterator[_StoredArray]:
    offset = 0
    view = memoryview(bin_bytes)
    for layer in param.layers:
        for count, tagged in array_layout(layer, kinds):
            if count < 0:
                raise NcnnFormatError(f"layer {layer.name}: negative weight count {count}")
            fp16 = False
            if tagged:
                if offset + _TAG_BYTES > len(view):
                    raise _mismatch(layer, len(bin_bytes))
                tag = int.from_bytes(view[offset : offset + _TAG_BYTES], "little")
                offset += _TAG_BYTES
                if tag == FP16_TAG:
                    fp16 = True
                elif tag != FP32_TAG:
                    raise NcnnFormatError(f"layer {layer.name}: unsupported weight storage tag 0x{tag:08X}")
            itemsize = 2 if fp16 else 4
            nbytes = count * itemsize
            if offset + nbytes > len(view):
                raise _mismatch(layer, len(bin_bytes))
            dtype = "<f2" if fp16 else "<f4"
            data = np.frombuffer(view[offset : offset + nbytes], dtype=dtype).astype(np.float32)
            offset += (nbytes + 3) // 4 * 4
            yield _StoredArray(layer.name, data, tagged, fp16)
    if offset != len(bin_bytes):
        raise NcnnFormatError(
            f".bin holds {len(bin_bytes)} bytes but the .param's layers describe {offset}: they do not belong together"
        )


def _mismatch(layer: NcnnLayer, size: int) -> NcnnFormatError:
    return NcnnFormatError(f".bin ({size} bytes) ends inside layer {layer.name}: the .param and .bin do not match")


def read_weights(param: NcnnParam, bin_bytes: bytes,
                 kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> dict[str, list[np.ndarray]]:
    """Layer name -> its float32 arrays (flat, file order). Raises NcnnFormatError on mismatch."""
    weights: dict[str, list[np.ndarray]] = {}
    for stored in _scan(param, bin_bytes, kinds):
        weights.setdefault(stored.layer, []).append(stored.data)
    return weights


def _encode(data: np.ndarray, tagged: bool, fp16: bool) -> bytes:
    flat = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
    if not tagged:
        return flat.astype("<f4").tobytes()
    if fp16:
        payload = flat.astype("<f2").tobytes()
        payload += b"\0" * (-len(payload) % 4)
        return FP16_TAG.to_bytes(_TAG_BYTES, "little") + payload
    return FP32_TAG.to_bytes(_TAG_BYTES, "little") + flat.astype("<f4").tobytes()


def write_weights(param: NcnnParam, weights: dict[str, list[np.ndarray]], fp16: bool,
                  kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> bytes:
    """Serialise weights in the order the `.param` expects; tagged arrays fp16 when asked."""
    chunks: list[bytes] = []
    for layer in param.layers:
        layout = array_layout(layer, kinds)
        if not layout:
            continue
        arrays = weights.get(layer.name)
        if arrays is None or len(arrays) != len(layout):
            found = "none" if arrays is None else len(arrays)
            raise NcnnFormatError(f"layer {layer.name}: expected {len(layout)} weight arrays, got {found}")
        for (count, tagged), array in zip(layout, arrays):
            if array.size != count:
                raise NcnnFormatError(f"layer {layer.name}: array has {array.size} values, the .param says {count}")
            chunks.append(_encode(array, tagged, fp16))
    return b"".join(chunks)


def blend_bins(param_text: str, bin_a: bytes, bin_b: bytes, dn: float) -> bytes:
    """Denoise-strength blend of two weight files of one graph: w = dn*a + (1-dn)*b.

    Each array keeps a's storage (fp16 or fp32), so the result loads with a's `.param`.
    """
    if not 0.0 <= dn <= 1.0:
        raise ValueError(f"denoise strength must be in [0, 1], got {dn}")
    param = NcnnParam.parse(param_text)
    chunks: list[bytes] = []
    for a, b in zip(_scan(param, bin_a), _scan(param, bin_b), strict=True):
        if dn in (0.0, 1.0):  # exact end points: no rounding, no sign flips of zeros
            mixed = a.data if dn == 1.0 else b.data
        else:
            mixed = (dn * a.data.astype(np.float64) + (1.0 - dn) * b.data.astype(np.float64)).astype(np.float32)
        chunks.append(_encode(mixed, a.tagged, a.fp16))
    return b"".join(chunks)
