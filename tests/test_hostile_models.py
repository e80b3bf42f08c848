"""Hostile model files through the real CLI (issue 8, items 5-8).

Edited `.param` files that crashed ncnn (SIGSEGV/SIGFPE) run in a forked child: if the graph
check ever lets one through, the test fails naming the signal instead of killing pytest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hostile_support import edited_model, in_child, official_sidecar, replace_once
from realesr_portable.cli import app
from realesr_portable.graph.check import check_graph
from realesr_portable.graph.layers import LAYER_KINDS
from realesr_portable.model.catalog import resolve_model
from realesr_portable.graph.ncnn_files import NcnnFormatError, NcnnParam, read_weights
from realesr_portable.graph.params import GraphError
from realesr_portable.model.spec import ModelSpec, ModelSpecError

runner = CliRunner()
V3 = "realesr-animevideov3-x2"
ANIME = "realesrgan-x4plus-anime"
CPU = ["-g", "-1", "-q", "--threads", "1"]
CONV2 = "Conv_2                   1 1 56 57 0=64 1=3 4=1 5=1 6=36864"


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def _run_cli(tmp_path: Path, param: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["-i", str(_image(tmp_path)), "-o", str(tmp_path / "out.png"), "-m", str(param), *CPU])
    return result.exit_code, result.output


def _refused_in_child(tmp_path: Path, param: Path, needle: str) -> None:
    status, value = in_child(lambda: _run_cli(tmp_path, param))
    assert status == "ok", f"the CLI did not return: {status} {value}"
    code, output = value
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
    assert needle in output and str(param) in output
    assert not (tmp_path / "out.png").exists()


# Item 5: a weight-data size that is not a finite integer.
@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-5"])
def test_weight_size_not_a_finite_count_is_one_line(tmp_path: Path, value: str) -> None:
    param = edited_model(tmp_path, V3, replace_once(CONV2, CONV2.replace("6=36864", f"6={value}")))
    _refused_in_child(tmp_path, param, "Conv_2")
    with pytest.raises(NcnnFormatError):
        read_weights(NcnnParam.parse(param.read_text()), resolve_model(V3).bin.read_bytes())


# Item 6: sidecars with wrong JSON types or shapes.
@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("value_range", 5, "value_range"),
        ("value_range", [None, 1], "value_range"),
        ("value_range", [1, 0], "value_range"),
        ("value_range", [0, 1e400], "value_range"),
        ("spec_version", "2", "spec_version"),
        ("spec_version", 2, "newer"),
        ("scale", "4", "scale"),
        ("scale", True, "scale"),
        ("scale", 2.5, "scale"),
        ("tile_pad", 10**9, "tile_pad"),
        ("in_channels", [3], "in_channels"),
        ("arch_params", [], "arch_params"),
        ("input_blob", "da ta", "input_blob"),
        ("fp16_weights", "yes", "fp16_weights"),
    ],
)
def test_sidecar_with_wrong_types_is_one_line(tmp_path: Path, field: str, value: Any, needle: str) -> None:
    sidecar = official_sidecar(V3)
    sidecar[field] = value
    param = edited_model(tmp_path, V3, sidecar=sidecar)
    code, output = _run_cli(tmp_path, param)
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert needle in output and "m.json" in output


@pytest.mark.parametrize("text, needle", [
    ("[" * 100_000 + "]" * 100_000, "cannot read model sidecar"),
    ('{"name": "m", "scale": ' + "9" * 5000 + "}", "cannot read model sidecar"),
    (" " * (2 << 20) + "{}", "larger than"),
    ("\udcff".encode("utf-8", "surrogatepass").decode("latin-1"), "cannot read model sidecar"),
])
def test_sidecar_bombs_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    param = edited_model(tmp_path, V3, sidecar=text)
    with pytest.raises(ModelSpecError, match=needle):
        ModelSpec.load(param.with_suffix(".json"))
    code, output = _run_cli(tmp_path, param)
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1


# Item 7: edits that pass the parser. With ncnn 1.0.20261020 on an 8x8 input the first four crashed
# it natively (SIGSEGV; 19=1 SIGFPE or an error, by memory contents); the others made it compute garbage
# silently (a float read as an int's bits, a 3x3 conv fed 32 channels) or fail without a message.
PRELU_ON_INPUT = ("Convolution              Conv_0                   1 1 input.1_splitncnn_1 54 0=64 1=3 4=1 5=1 6=1728\n"
                  "PReLU                    PRelu_1                  1 1 54 56 0=64",
                  "PReLU                    PRelu_1                  1 1 input.1_splitncnn_1 54 0=64\n"
                  "Convolution              Conv_0                   1 1 54 56 0=64 1=3 4=1 5=1 6=1728")
CRASHERS = {
    "prelu_64_slopes_on_3_channels": (PRELU_ON_INPUT, "64 slopes"),
    "pad_int_max": ((CONV2, CONV2.replace("4=1", "4=2147483647")), "outside"),
    "interp_renamed_matmul": (("Interp                   Resize_37", "MatMul                   Resize_37"), "unknown layer type"),
    "dynamic_weight": ((CONV2, CONV2 + " 19=1"), "19=1"),
    "weights_for_other_channels": ((CONV2, CONV2.replace("0=64 1=3", "0=32 1=3").replace("6=36864", "6=18432")), "64 slopes"),
    "float_where_int_is_read": ((CONV2, CONV2.replace("4=1", "4=1.0")), "integer"),
    "leaky_without_slope": ((CONV2, CONV2 + " 9=2"), "activation"),
    "interp_type_zero": (("Resize_37                1 1 input.1_splitncnn_0 111 0=1", "Resize_37                1 1 input.1_splitncnn_0 111 0=0"), "0=0 is outside"),
    "blob_read_before_made": (("1 1 56 57 0=64", "1 1 99 57 0=64"), "before any layer makes it"),
    "blob_read_twice": (("PRelu_3                  1 1 57 59", "PRelu_3                  1 1 56 59"), "read twice"),
    "header_too_few_blobs": (("7767517\n41 42", "7767517\n41 7"), "header declares"),
    "pixelshuffle_bad_channels": (("DepthToSpace_35          1 1 105 106 0=4", "DepthToSpace_35          1 1 105 106 0=5"), "divisible"),
}


@pytest.mark.parametrize("case", sorted(CRASHERS))
def test_graph_ncnn_would_crash_on_or_misread_is_refused_with_one_line(tmp_path: Path, case: str) -> None:
    (old, new), needle = CRASHERS[case]
    param = edited_model(tmp_path, V3, replace_once(old, new))
    _refused_in_child(tmp_path, param, needle)


def test_official_graphs_pass_the_check_and_keep_their_scale() -> None:
    for name in ("realesrgan-x4plus", ANIME, V3, "realesr-animevideov3-x3", "realesr-animevideov3-x4"):
        files = resolve_model(name)
        out = check_graph(files.param.read_text(), 3, "data", "output", scale=files.spec.scale, out_channels=3)
        assert (out.c, out.h) == (3, 8 * files.spec.scale)


def test_layer_table_gives_each_layer_its_context() -> None:
    """The one table's halo rule: a 3x3 conv reads 1 px, dilation 2 reads 2, bicubic 2, PReLU 0; an
    unpadded 3x3 reads 2 px after its anchor and leaves the input's grid."""
    from realesr_portable.graph.params import Params

    conv = LAYER_KINDS["Convolution"]
    assert conv.geometry(Params(ints={1: 3, 4: 1}), 1).context == (1, 1, 1, 1)
    assert conv.geometry(Params(ints={1: 3, 2: 2, 4: 2}), 1).context == (2, 2, 2, 2)
    shrinking = conv.geometry(Params(ints={1: 3, 4: 0}), 1)  # unpadded: all its reach below/right, off the grid
    assert shrinking is not None and shrinking.context == (0, 2, 0, 2) and not shrinking.aligned
    assert LAYER_KINDS["PReLU"].geometry(Params(), 1).context == (0, 0, 0, 0)
    assert LAYER_KINDS["Interp"].geometry(Params(ints={0: 3}, floats={1: 2.0, 2: 2.0}), 1).context == (2, 2, 2, 2)


# Item 8: a sidecar that lies about the scale, on the split-trunk path (RRDBNet) and the plain one.
@pytest.mark.parametrize("name, lie", [(ANIME, 2), (ANIME, 3), (V3, 4)])
def test_sidecar_lying_about_scale_is_refused_on_every_path(tmp_path: Path, name: str, lie: int) -> None:
    sidecar = official_sidecar(name)
    sidecar["scale"] = lie
    param = edited_model(tmp_path, name, sidecar=sidecar)
    code, output = _run_cli(tmp_path, param)
    assert code == 2, output
    assert f"not x{lie} as the sidecar says" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_sidecar_naming_an_inner_blob_as_output_is_refused(tmp_path: Path) -> None:
    sidecar = official_sidecar(V3)
    sidecar["output_blob"] = "106"  # the PixelShuffle's output: x4 before the final x0.5 resize
    param = edited_model(tmp_path, V3, sidecar=sidecar)
    code, output = _run_cli(tmp_path, param)
    assert code == 2 and "not x2" in output


def test_graph_error_is_a_value_error_with_one_line() -> None:
    text = resolve_model(V3).param.read_text().replace("Interp                   Resize_37", "Softmax                  Resize_37")
    with pytest.raises(GraphError) as err:
        check_graph(text, 3, "data", "output", scale=2, out_channels=3)
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


def test_honest_edited_copy_still_upscales(tmp_path: Path) -> None:
    """The check must not refuse a good model: an official copy with its sidecar runs."""
    param = edited_model(tmp_path, V3, sidecar=json.loads(json.dumps(official_sidecar(V3))))
    code, output = _run_cli(tmp_path, param)
    assert code == 0, output
    assert Image.open(tmp_path / "out.png").size == (16, 16)
