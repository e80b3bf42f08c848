"""Write ncnn `.param` text and `.bin` weights straight from a state_dict, by the family's own writer.

Why not pnnx for the known generators: pnnx traces the model and its memory grows faster than
linearly with RRDB depth (about 23 GiB for the 23-block x4plus); a family that knows its graph
(`ArchFamily.write_ncnn`, building on `archs.ncnn_graph.NcnnGraph`) writes it in a fraction of a
second and a few hundred MiB. The two routes are interchangeable and cross-checked in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..archs.family import ArchInfo, UnsupportedModelError
from ..archs.ncnn_graph import INPUT_BLOB, OUTPUT_BLOB, NcnnGraph
from ..graph.ncnn_files import write_weights

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class NcnnModel:
    """An ncnn model in memory: the `.param` text, the `.bin` bytes and its blob names."""

    param_text: str
    bin_bytes: bytes
    input_blob: str = INPUT_BLOB
    output_blob: str = OUTPUT_BLOB


def write_ncnn(info: ArchInfo, state_dict: StateDict, fp16: bool = True) -> NcnnModel:
    """The ncnn graph and weights for a known generator; fp16 conv weights unless `fp16=False`.

    A bicubic `Interp` is appended when `info.output_resize` is not 1 (see `torch_post`).

    Raises UnsupportedModelError for families without a direct writer (use pnnx for those).
    """
    writer = info.family.write_ncnn
    if writer is None:
        raise UnsupportedModelError(f"no direct ncnn writer for {info.name}; export it through pnnx")
    graph = NcnnGraph()
    try:
        output = writer(graph, state_dict, info.params)
    except KeyError as err:
        raise UnsupportedModelError(f"{info.name}: state_dict lacks {err.args[0]}") from None
    if info.output_resize != 1.0:  # official animevideov3 x2/x3: the x4 net, then a bicubic resize
        output = graph.bicubic(output, info.output_resize)
    param = graph.finish(output)
    return NcnnModel(param.to_text(), write_weights(param, graph.weights, fp16))


def torch_post(info: ArchInfo) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The torch equivalent of what `write_ncnn` appends after the network, or None."""
    if info.output_resize == 1.0:
        return None
    factor = float(info.output_resize)
    return lambda y: F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False)
