"""Mutations of official model files, the zoo of small foreign-layer graphs, and the rule cases
both validators must agree on: the inputs of the Python fuzz (fuzz_python.py) and the C++ one
(fuzz_verdicts.py).

Each case is a mutated `.param` text, a `.bin` mutation (described, applied where it runs to the
official bytes) and a mutated sidecar JSON.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realesr_portable.model.catalog import resolve_model

VALUES = ["0", "1", "-1", "2", "3", "4", "5", "7", "16", "63", "64", "65", "255", "4096", "2147483647",
          "-2147483648", "-233", "-234", "1.0", "0.5", "2.000000e+00", "16.0", "1e400", "inf", "nan",
          "-0.0", "x", "", "99999999999", "1,2.0", "0,", "3,1.0"]
TYPES = ["Convolution", "ConvolutionDepthWise", "PReLU", "ReLU", "Split", "Concat", "Eltwise", "BinaryOp",
         "Interp", "PixelShuffle", "Reorg", "Input", "Noop", "Clip", "BatchNorm", "MatMul", "Deconvolution",
         "Crop", "Softmax", "InnerProduct", "Reshape", "Permute", "Slice", "Padding", "MemoryData", "Pooling"]
JSON_VALUES: list[Any] = [None, True, False, -1, 0, 1, 2, 3, 4, 5, 16, 17, 2**40, 1.5, "x", "", [], [0],
                          [0, 1], [1, 0], [None, 1], [0, 255], {}, "data", "output", "54", "106", 1e308]


@dataclass(frozen=True)
class Case:
    model: str
    param: str
    bin_edit: tuple[str, int, int]  # (kind, position, value); kind "none" keeps the official bytes
    sidecar: str
    label: str  # what was mutated, for the failure message


def _mutate_line(rng: random.Random, line: str, blobs: list[str]) -> tuple[str, str]:
    tokens = line.split()
    n_bottom, n_top = int(tokens[2]), int(tokens[3])
    # An earlier "count" mutation of this line may declare more blobs than it names: the blob
    # names end at the counts or at the line's end, whichever comes first.
    first_param = min(4 + n_bottom + n_top, len(tokens))
    op = rng.choice(["value", "value", "value", "key", "add", "drop", "type", "blob", "count"])
    if op == "value" and len(tokens) > first_param:
        i = rng.randrange(first_param, len(tokens))
        key = tokens[i].split("=", 1)[0]
        tokens[i] = f"{key}={rng.choice(VALUES)}"
    elif op == "key" and len(tokens) > first_param:
        i = rng.randrange(first_param, len(tokens))
        value = tokens[i].split("=", 1)[1] if "=" in tokens[i] else "1"
        tokens[i] = f"{rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 18, 19, 31, 32, 100, -23310, -23301, -23399])}={value}"
    elif op == "add":
        tokens.append(f"{rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15, 19, -23310])}={rng.choice(VALUES)}")
    elif op == "drop" and len(tokens) > first_param:
        del tokens[rng.randrange(first_param, len(tokens))]
    elif op == "type":
        tokens[0] = rng.choice(TYPES)
    elif op == "blob" and first_param > 4:
        tokens[rng.randrange(4, first_param)] = rng.choice(blobs + ["nowhere"])
    elif op == "count":
        tokens[rng.choice([2, 3])] = str(rng.choice([0, 1, 2, 3, 9]))
    return " ".join(tokens), op


def mutate_param(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.strip().splitlines()
    blobs = sorted({tok for line in lines[2:] for tok in line.split()[4 : 4 + sum(map(int, line.split()[2:4]))]})
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        where = rng.randrange(2, len(lines))
        op = rng.choice(["line"] * 8 + ["header", "swap", "dup", "delete"])
        if op == "line":
            lines[where], what = _mutate_line(rng, lines[where], blobs)
            op = f"line {where} {what}"
        elif op == "header":
            counts = lines[1].split()
            counts[rng.randrange(2)] = rng.choice(["0", "1", "7", "41", "42", "1000", "2147483647", "-1"])
            lines[1] = " ".join(counts)
        elif op == "swap":
            other = rng.randrange(2, len(lines))
            lines[where], lines[other] = lines[other], lines[where]
        elif op == "dup":
            lines.insert(where, lines[where])
        else:
            del lines[where]
        done.append(op)
    return "\n".join(lines) + "\n", "; ".join(done)


def mutate_sidecar(rng: random.Random, sidecar: dict[str, Any]) -> tuple[str, str]:
    data = dict(sidecar)
    key = rng.choice(sorted(data) + ["spec_version", "unknown_key"])
    op = rng.choice(["set", "set", "set", "delete"])
    if op == "delete":
        data.pop(key, None)
    else:
        data[key] = rng.choice(JSON_VALUES)
    return json.dumps(data), f"json {op} {key}"


def bin_edit(rng: random.Random, size: int) -> tuple[str, int, int]:
    kind = rng.choice(["truncate", "append", "byte", "byte", "tag"])
    if kind == "truncate":
        return kind, rng.choice([1, 2, 4, 100, size // 2, size]), 0
    if kind == "append":
        return kind, rng.choice([1, 4, 100]), 0
    if kind == "tag":
        return kind, 0, rng.choice([0, 1, 0x01306B47 + 1, 0xFFFFFFFF])
    return kind, rng.randrange(size), rng.randrange(256)


# Small graphs of the layer types foreign models bring (SPAN: MemoryData, Swish, Sigmoid;
# RealCUGAN: Deconvolution, global Pooling, InnerProduct, spatial Crop; transformers: Permute,
# LayerNorm, Reshape, Softmax, GELU), each valid as written and x2, so mutations start from a model
# that runs. "zoo-image" uses only layers the C++ runner's ncnn holds; "zoo-global" also the rest
# (Deconvolution, Pooling, Softmax, LayerNorm, GELU: refused there as not built in);
# "zoo-border" eats 2 px per side (unpadded convolutions, pre-padded by the Python Session);
# "zoo-depthwise" upscales with DeconvolutionDepthWise, one per channel (7= group = channels,
# stride 2) and one grouped (7=2 of 8 channels: ncnn's other path), with a leaky activation
# (also not built into the C++ runner's ncnn).
ZOO = {
    "zoo-image": """Input in 0 1 data
MemoryData mean 0 1 cst 0=1 1=1 2=3
BinaryOp sub 2 1 data cst x0 0=1
Convolution c1 1 1 x0 x1 0=8 1=3 4=1 5=1 6=216
Swish s1 1 1 x1 x2
Padding pad 1 1 x2 x3 0=1 1=1 2=1 3=1 4=1
Convolution c2 1 1 x3 x4 0=8 1=3 5=1 6=576
Split sp 1 2 x4 x5 x6
Slice sl 1 2 x5 x7 x8 -23300=2,4,-233 1=0
Mish m 1 1 x7 x9
HardSwish hs 1 1 x8 x10 0=2.000000e-01 1=5.000000e-01
Concat cat 2 1 x9 x10 x11 0=0
Permute p1 1 1 x11 x12 0=1
Permute p2 1 1 x12 x13 0=1
BinaryOp add 2 1 x13 x6 x15 0=0
Sigmoid sg 1 1 x15 x16
Convolution c3 1 1 x16 x17 0=12 1=3 4=1 5=1 6=864
PixelShuffle ps 1 1 x17 output 0=2
""",
    "zoo-global": """Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 4=1 5=1 6=216
GELU g 1 1 a b
Split sp 1 3 b b1 b2 b3
Pooling gp 1 1 b1 v 0=1 4=1
InnerProduct ip1 1 1 v w 0=4 1=1 2=32 9=1
InnerProduct ip2 1 1 w z 0=8 1=1 2=32 9=4
BinaryOp mul 2 1 b2 z se 0=2
Softmax sm 1 1 se s1 0=0 1=1
Deconvolution dc 1 1 s1 up 0=8 1=4 3=2 4=1 5=1 6=1024
Deconvolution dc2 1 1 b3 up2 0=8 1=2 3=2 5=1 6=256
Padding pd 1 1 up2 pp 0=1 1=1 2=1 3=1
Crop cr 1 1 pp cc -23309=2,1,1 -23310=2,-1,-1 -23311=2,-2,-1
Crop cc2 1 1 cc cd -23309=1,0 -23310=1,8 -23311=1,0
BinaryOp add 2 1 up cd sum 0=0
Permute p1 1 1 sum t 0=3
LayerNorm ln 1 1 t n 0=8 1=1.000000e-05 2=1
Permute p2 1 1 n u 0=4
Reshape rs 1 1 u r 0=0 1=-1 2=8
Convolution c2 1 1 r output 0=3 1=3 4=1 5=1 6=216
""",
    "zoo-border": """Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 5=1 6=216 9=1
Convolution c2 1 1 a b 0=12 1=3 5=1 6=864
PixelShuffle ps 1 1 b output 0=2
""",
    "zoo-depthwise": """Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 4=1 5=1 6=216
DeconvolutionDepthWise up 1 1 a b 0=8 1=4 3=2 4=1 5=1 6=128 7=8
DeconvolutionDepthWise dg 1 1 b c 0=8 1=3 4=1 5=1 6=288 7=2 9=2 -23310=1,1.000000e-01
Convolution c2 1 1 c output 0=3 1=3 4=1 5=1 6=216
""",
}


def zoo_models(folder: Path) -> list[str]:
    """Write the ZOO graphs with random weights and sidecars into `folder`; their .param paths
    (usable as `Case.model`)."""
    from realesr_portable.graph.ncnn_files import NcnnParam, array_layout, write_weights
    from realesr_portable.model.spec import ModelSpec

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    paths = []
    for name, body in ZOO.items():
        lines = body.strip().splitlines()
        blobs = {tok for line in lines for tok in line.split()[4 : 4 + sum(map(int, line.split()[2:4]))]}
        text = "\n".join(["7767517", f"{len(lines)} {len(blobs)}", *lines]) + "\n"
        param = NcnnParam.parse(text)
        weights = {layer.name: [rng.normal(0, 0.3, count).astype(np.float32) for count, _ in array_layout(layer)]
                   for layer in param.layers if array_layout(layer)}
        path = folder / f"{name}.param"
        path.write_text(text)
        path.with_suffix(".bin").write_bytes(write_weights(param, weights, fp16=False))
        ModelSpec(name=name, scale=2, input_blob="data", output_blob="output").save(path.with_suffix(".json"))
        paths.append(str(path))
    return paths


def make_cases(model: str, count: int, seed: int) -> list[Case]:
    """`count` mutated variants of an official model: mostly the graph, some sidecar, few weights."""
    files = resolve_model(model)
    text, size = files.param.read_text(), files.bin.stat().st_size
    sidecar = json.loads(files.spec.to_json())
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        roll = rng.random()
        param, json_text, edit, label = text, json.dumps(sidecar), ("none", 0, 0), ""
        if roll < 0.7:
            param, label = mutate_param(rng, text)
        elif roll < 0.9:
            json_text, label = mutate_sidecar(rng, sidecar)
        else:
            edit = bin_edit(rng, size)
            label = f"bin {edit}"
        cases.append(Case(model, param, edit, json_text, label))
    return cases


def apply_bin(data: bytes, edit: tuple[str, int, int]) -> bytes:
    """The official bytes with a case's `.bin` mutation applied."""
    kind, pos, value = edit
    if kind == "truncate":
        return data[: len(data) - pos]
    if kind == "append":
        return data + b"\x01" * pos
    if kind == "tag":
        return value.to_bytes(4, "little") + data[4:]
    if kind == "byte":
        return data[:pos] + bytes([value]) + data[pos + 1 :]
    return data


CONV2 = "Conv_2                   1 1 56 57 0=64 1=3 4=1 5=1 6=36864"  # realesr-animevideov3-x2's 2nd conv
RESIZE = "Resize_37                1 1 input.1_splitncnn_0 111 0=1 1=4.000000e+00 2=4.000000e+00"


def rule_cases(model: str = "realesr-animevideov3-x2") -> list[Case]:
    """One case per bound of the rule classes both validators must share (issue 17 items 12-14):
    dilation, kernel, stride and pad ranges, weight count vs input channels, Interp scale, and the
    sidecar's size_multiple, tile_pad, in_channels and scale; each just inside and just outside."""
    files = resolve_model(model)
    text, sidecar = files.param.read_text(), json.loads(files.spec.to_json())
    assert CONV2 in text and RESIZE in text, "the official graph changed: update CONV2/RESIZE"
    conv = {"dilation": ["2=16", "2=17", "2=1000", "12=0"], "kernel": ["1=31", "1=32", "11=0"],
            "stride": ["3=16", "3=17", "13=0"], "pad": ["4=256", "4=257", "4=100000", "15=-1", "4=-233", "4=-235"],
            "weights": ["6=36863", "6=36865", "6=1728", "6=73728"], "outputs": ["0=63", "0=8193"]}
    cases = []
    for rule, edits in conv.items():
        for edit in edits:
            key = edit.split("=")[0]
            line = " ".join(t for t in CONV2.split() if not t.startswith(f"{key}=")) + f" {edit}"
            cases.append(Case(model, text.replace(CONV2, line), ("none", 0, 0), json.dumps(sidecar), f"{rule} {edit}"))
    for scale in ("16.0", "16.5", "100000.0", "0.0625", "0.06"):
        line = RESIZE.replace("1=4.000000e+00 2=4.000000e+00", f"1={scale} 2={scale}")
        cases.append(Case(model, text.replace(RESIZE, line), ("none", 0, 0), json.dumps(sidecar), f"interp scale {scale}"))
    for key, values in {"size_multiple": [1, 64, 65, 100000, 0], "tile_pad": [0, 1024, 1025, -1],
                        "in_channels": [1, 3, 2], "out_channels": [1, 3], "scale": [0, 1, 2, 16, 17, 2**40]}.items():
        for value in values:
            cases.append(Case(model, text, ("none", 0, 0), json.dumps({**sidecar, key: value}), f"sidecar {key}={value}"))
    return cases
