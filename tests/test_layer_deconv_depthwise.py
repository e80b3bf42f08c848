"""DeconvolutionDepthWise: a learned upsampling per channel (or per channel group), as foreign
models bring it, through the layer table (portable/graph/layers.py) and both runtimes.

Why: the table accepted the type while no zoo graph and no test used it, so the in-CI fuzz never
mutated its parameters (group, stride, kernel, weight count). "zoo-depthwise" (fuzz_cases.py) is
that graph: one layer with group = channels and stride 2 (the x2), one grouped (group 2 of 8
channels, ncnn's other code path) with a leaky activation. Here: it runs with the right shape and
really per group, and each bad parameter is refused with one line, before ncnn sees it; the C++
checker (whose ncnn leaves the type out) refuses the same edits.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fuzz_cases import Case, zoo_models
from hostile_support import in_child
from realesr_portable.cli import app
from realesr_portable.device.select import cpu_device
from realesr_portable.graph.check import check_graph
from realesr_portable.graph.facts import graph_facts
from realesr_portable.graph.layers import LAYER_KINDS
from realesr_portable.graph.ncnn_files import NcnnParam
from realesr_portable.graph.params import GraphError
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.session import Session

UP = "DeconvolutionDepthWise up 1 1 a b 0=8 1=4 3=2 4=1 5=1 6=128 7=8"  # per channel, stride 2: the x2
GROUPED = "DeconvolutionDepthWise dg 1 1 b c 0=8 1=3 4=1 5=1 6=288 7=2 9=2 -23310=1,1.000000e-01"


def _add(line: str, edit: str) -> str:
    """`line` with parameter `edit` ("key=value") replacing that key's, or appended."""
    key = edit.split("=", 1)[0]
    return " ".join(t for t in line.split() if not t.startswith(f"{key}=")) + f" {edit}"


# Each edit of one layer line, and the one-line refusal it must get (before ncnn loads anything).
REFUSALS = {
    "group_not_dividing_channels": (UP, _add(UP, "7=3"), "layer up: group 3 does not divide 8 input / 8 output channels"),
    "group_not_dividing_outputs": (UP, _add(_add(UP, "0=12"), "6=192"), "layer up: group 8 does not divide 8 input / 12 output"),
    "weights_of_an_ungrouped_deconvolution": (
        UP, _add(UP, "6=1024"), "layer up: weight count 1024 does not fit 8 input channels (8 outputs, 4x4 kernel: 128 weights)"),
    "weight_count_one_short": (UP, _add(UP, "6=127"), "layer up: weight count 127 does not fit"),
    "grouped_weights_for_one_group": (
        GROUPED, _add(GROUPED, "6=576"), "layer dg: weight count 576 does not fit 8 input channels (8 outputs, 3x3 kernel: 288"),
    "stride_0": (UP, _add(UP, "3=0"), "layer up: param 3=0 is outside 1..16"),
    "stride_h_0": (UP, _add(UP, "13=0"), "layer up: param 13=0 is outside 1..16"),
    "huge_kernel": (UP, _add(UP, "1=32"), "layer up: param 1=32 is outside 1..31"),
    "kernel_int_max": (UP, _add(UP, "1=2147483647"), "layer up: param 1=2147483647 is outside 1..31"),
    "huge_kernel_h": (UP, _add(UP, "11=4096"), "layer up: param 11=4096 is outside 1..31"),
    "group_0": (UP, _add(UP, "7=0"), "layer up: param 7=0 is outside 1..8192"),
    "group_negative": (UP, _add(UP, "7=-8"), "layer up: param 7=-8 is outside 1..8192"),
    "group_as_float": (UP, _add(UP, "7=8.0"), "layer up: param 7='8.0' must be an integer"),
    "dilation_0": (UP, _add(UP, "2=0"), "layer up: param 2=0 is outside 1..16"),
    "same_padding_code": (UP, _add(UP, "4=-233"), "layer up: param 4=-233 is outside 0..256"),
    "output_padding_17": (UP, _add(UP, "18=17"), "layer up: param 18=17 is outside 0..16"),
    "int8_weights": (UP, _add(UP, "8=1"), "layer up: DeconvolutionDepthWise takes no parameter 8"),
    "fixed_output_size": (UP, _add(UP, "20=64"), "layer up: DeconvolutionDepthWise takes no parameter 20"),
    "leaky_without_slope": (GROUPED, GROUPED.replace(" -23310=1,1.000000e-01", ""),
                            "layer dg: activation 2 needs 1 parameter(s) in -23310, got 0"),
    "two_inputs": (UP, UP.replace("up 1 1 a b", "up 2 1 a data b"), "layer up: DeconvolutionDepthWise takes 1..1 inputs"),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zoo-depthwise with random weights and its x2 sidecar (the graph the fuzz mutates)."""
    (param,) = [Path(p) for p in zoo_models(tmp_path_factory.mktemp("zoo")) if Path(p).stem == "zoo-depthwise"]
    text = param.read_text()
    assert UP in text and GROUPED in text, "zoo-depthwise changed: update UP/GROUPED"
    return param


def _edited(model: Path, folder: Path, old: str, new: str) -> Path:
    """A copy of the zoo model with one line edited (same weights, same sidecar)."""
    text = model.read_text()
    assert text.count(old) == 1
    param = folder / "m.param"
    param.write_text(text.replace(old, new))
    (folder / "m.bin").symlink_to(model.with_suffix(".bin"))
    (folder / "m.json").write_text(model.with_suffix(".json").read_text())
    return param


def test_the_table_holds_deconvolution_depthwise_with_a_group() -> None:
    kind = LAYER_KINDS["DeconvolutionDepthWise"]
    assert kind.ints[7] == (1, 8192) and kind.ints[3] == (1, 16) and kind.ints[1] == (1, 31)
    assert 7 not in LAYER_KINDS["Deconvolution"].ints  # the group is what sets the two apart


def test_a_depthwise_deconvolution_graph_upscales_x2_through_the_runtime(model: Path) -> None:
    text = model.read_text()
    out = check_graph(text, 3, "data", "output", scale=2, out_channels=3)
    assert (out.c, out.h, out.w) == (3, 16, 16)
    facts = graph_facts(NcnnParam.parse(text))
    assert (facts.scale, facts.pre_pad, facts.global_layers) == (2, 0, ())
    session = Session(resolve_model(str(model)), cpu_device(), fp32=True, threads=1)
    result = session.run(np.random.default_rng(0).random((3, 13, 9), dtype=np.float32))
    assert result.shape == (3, 26, 18) and np.isfinite(result).all()
    picture = np.random.default_rng(1).integers(0, 255, (40, 33, 3), dtype=np.uint8)
    engine = Engine([session])
    whole, tiled = engine.run_model(picture, Options()), engine.run_model(picture, Options(tile=12))
    assert whole.shape == tiled.shape == (80, 66, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1  # a local layer: tiles match up to rounding


def test_the_groups_keep_their_channels_apart(model: Path) -> None:
    """ncnn runs the layers as grouped: an input channel reaches only the outputs of its group
    (every other output is its bias, a constant, or the leaky activation of one)."""
    session = Session(resolve_model(str(model)), cpu_device(), fp32=True, threads=1)
    rng = np.random.default_rng(2)
    one = np.zeros((8, 9, 7), np.float32)
    one[2] = rng.random((9, 7), dtype=np.float32)
    (up,) = session.extract({"a": one}, ["b"])
    assert up.shape == (8, 18, 14)
    varies = [bool(np.ptp(channel) > 1e-6) for channel in up]
    assert varies == [c == 2 for c in range(8)], varies  # group = channels: channel 2 alone
    one = np.zeros((8, 9, 7), np.float32)
    one[5] = rng.random((9, 7), dtype=np.float32)
    (grouped,) = session.extract({"b": one}, ["c"])
    assert grouped.shape == (8, 9, 7)
    varies = [bool(np.ptp(channel) > 1e-6) for channel in grouped]
    assert not any(varies[:4]) and all(varies[4:]), varies  # 2 groups of 4: channel 5 is in the second


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_depthwise_deconvolution_parameters_are_refused_with_one_line(model: Path, tmp_path: Path, case: str) -> None:
    old, new, message = REFUSALS[case]
    text = model.read_text().replace(old, new)
    with pytest.raises(GraphError, match=re.escape(message)) as err:
        check_graph(text, 3, "data", "output", scale=2, out_channels=3)
    assert "\n" not in str(err.value)
    # The CLI, in a child so that a check letting the edit through shows as the signal it dies of.
    param = _edited(model, tmp_path, old, new)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(image)
    args = ["-i", str(image), "-o", str(tmp_path / "out.png"), "-m", str(param), "-g", "-1", "-q", "--threads", "1"]
    status, value = in_child(lambda: (lambda r: (r.exit_code, r.output))(CliRunner().invoke(app, args)))
    assert status == "ok", f"the CLI did not return: {status} {value}"
    code, output = value
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert message in output and str(param) in output
    assert not (tmp_path / "out.png").exists()


def test_pads_that_leave_no_output_pixel_are_refused(model: Path) -> None:
    with pytest.raises(GraphError, match=re.escape("layer up: a 8x8 input leaves no output pixel")):
        check_graph(model.read_text().replace(UP, _add(UP, "4=10")), 3, "data", "output", scale=2, out_channels=3)


def test_the_cpp_checker_refuses_the_same_edits(model: Path) -> None:
    """The C++ runner's ncnn leaves DeconvolutionDepthWise out (docs/deploy.md): the valid graph
    gets that documented refusal, and every bad edit is refused too; parameter ranges are checked
    before the type's absence, with the same message as the Python table."""
    from deploy_support import build_runner
    from fuzz_verdicts import CPP_ONLY_REFUSALS, cpp_verdicts, python_verdict

    checker = build_runner("x86_64").parent / "realesr-portable-check"
    text, sidecar = model.read_text(), model.with_suffix(".json").read_text()
    cases = [Case(str(model), text, ("none", 0, 0), sidecar, "valid")]
    cases += [Case(str(model), text.replace(old, new), ("none", 0, 0), sidecar, label)
              for label, (old, new, _) in sorted(REFUSALS.items())]
    verdicts = cpp_verdicts(checker, cases, run=True)
    weights = model.with_suffix(".bin").read_bytes()
    assert python_verdict(cases[0], weights) == "ok"
    assert verdicts[0].startswith("refused: ") and any(r in verdicts[0] for r in CPP_ONLY_REFUSALS), verdicts[0]
    for case, verdict in zip(cases[1:], verdicts[1:]):
        message = REFUSALS[case.label][2]
        assert verdict.startswith("refused: ") and "\n" not in verdict, (case.label, verdict)
        assert message in python_verdict(case, weights), case.label
        if not any(r in verdict for r in CPP_ONLY_REFUSALS):  # checked before the type: the same words
            assert verdict.startswith(f"refused: {message}"), (case.label, verdict)
