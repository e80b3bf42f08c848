"""Denoise strength at convert time: w = dn*a + (1-dn)*b, equal to the runtime's blend of two .bin files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export_support import rrdb_info, small_model, srvgg_info
from realesr_portable.convert.api import convert_file
from realesr_portable.convert.dn import BlendError, blend_state_dicts
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.graph.ncnn_files import blend_bins


def test_blend_is_the_weighted_sum_with_exact_end_points() -> None:
    info = srvgg_info(4)
    a, b = small_model(info, seed=1).state_dict(), small_model(info, seed=2).state_dict()
    mixed = blend_state_dicts(a, b, 0.25, info, info)
    for key in a:
        torch.testing.assert_close(mixed[key], 0.25 * a[key] + 0.75 * b[key], rtol=0, atol=1e-7)
    assert all(torch.equal(blend_state_dicts(a, b, 1.0)[k], a[k]) for k in a)
    assert all(torch.equal(blend_state_dicts(a, b, 0.0)[k], b[k]) for k in a)


@pytest.mark.parametrize("dn", [-0.1, 1.01, float("nan")])
def test_strength_outside_0_1_is_refused(dn: float) -> None:
    sd = small_model(srvgg_info(2)).state_dict()
    with pytest.raises(BlendError, match=r"\[0, 1\]"):
        blend_state_dicts(sd, sd, dn)


def test_different_architectures_are_refused() -> None:
    x2, x4 = srvgg_info(2), srvgg_info(4)
    with pytest.raises(BlendError, match="different architectures"):
        blend_state_dicts(small_model(x2).state_dict(), small_model(x4).state_dict(), 0.5, x2, x4)
    rrdb = small_model(rrdb_info(4)).state_dict()
    with pytest.raises(BlendError, match="differ in"):  # even without ArchInfo: keys must match
        blend_state_dicts(small_model(x2).state_dict(), rrdb, 0.5)


def test_convert_time_blend_equals_runtime_blend_of_bins(tmp_path: Path) -> None:
    """Blending at convert time or blending two fp32 .bin files in the runtime gives the same bytes."""
    info = rrdb_info(2, blocks=1)
    a = save_state_dict(small_model(info, seed=4).state_dict(), tmp_path / "a.pth")
    b = save_state_dict(small_model(info, seed=5).state_dict(), tmp_path / "b.pth")
    common = {"fp16": False, "verify": False, "tile_pad": 8}
    ra = convert_file(a, tmp_path / "out", **common)
    rb = convert_file(b, tmp_path / "out", **common)
    mixed = convert_file(a, tmp_path / "out", name="mixed", dn=0.6, dn_src=b, **common)
    expected = blend_bins(ra.param.read_text(), ra.bin.read_bytes(), rb.bin.read_bytes(), 0.6)
    assert mixed.bin.read_bytes() == expected
    assert mixed.param.read_text() == ra.param.read_text()
