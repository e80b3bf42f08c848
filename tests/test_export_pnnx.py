"""pnnx route: same results as the direct writer on small models; failures of the child are caught."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export_support import load_files, ncnn_run, rrdb_info, small_model, srvgg_info, to_chw
from realesr_portable.convert.api import export_state_dict
from realesr_portable.convert.detect import ArchInfo
from realesr_portable.convert.direct_writer import write_ncnn
from realesr_portable.convert.pnnx_export import ExportError, export_with_pnnx
from realesr_portable.convert.verify import check_parity
from realesr_portable.graph.ncnn_files import NcnnParam, read_weights


@pytest.mark.parametrize("info", [rrdb_info(1), srvgg_info(3)], ids=["rrdbnet-x1", "srvgg-x3"])
def test_pnnx_fp32_matches_direct_writer_exactly(info: ArchInfo, tmp_path: Path, photo_crop) -> None:
    model = small_model(info, seed=1)
    result = export_state_dict(model.state_dict(), tmp_path, "viapnnx", fp16=False, route="pnnx")
    assert result.route == "pnnx" and result.max_abs is not None and result.max_abs < 1e-4
    assert (result.spec.input_blob, result.spec.output_blob) == ("in0", "out0")
    direct = write_ncnn(info, model.state_dict(), fp16=False)
    assert result.bin.read_bytes() == direct.bin_bytes  # same weights, same order, byte for byte
    chw = to_chw(photo_crop("coffee.png", 100, 200, 24, 32))
    via_pnnx = ncnn_run(load_files(result.param), chw)
    assert np.abs(via_pnnx - ncnn_run(direct, chw)).max() <= 1e-6


def test_pnnx_fp16_close_to_direct_writer(photo_crop) -> None:
    """pnnx flushes fp16 subnormals to zero and rounds a few values differently; outputs still agree."""
    info = srvgg_info(2)
    model = small_model(info, seed=2)
    via_pnnx = export_with_pnnx(model, (1, 3, 16, 16), fp16=True)
    direct = write_ncnn(info, model.state_dict(), fp16=True)
    assert len(via_pnnx.bin_bytes) == len(direct.bin_bytes)
    fp16_step = 2.0**-10  # relative spacing of fp16 values
    for a, b in zip(read_weights(NcnnParam.parse(via_pnnx.param_text), via_pnnx.bin_bytes).values(),
                    read_weights(NcnnParam.parse(direct.param_text), direct.bin_bytes).values()):
        for x, y in zip(a, b):
            assert np.all(np.abs(x - y) <= np.maximum(np.abs(y) * fp16_step, 6.2e-5))
    chw = to_chw(photo_crop("astronaut.png", 60, 180, 24, 24))
    assert np.abs(ncnn_run(via_pnnx, chw) - ncnn_run(direct, chw)).max() < 1e-4
    # The graph check compares with the weights as stored, so pnnx's rounding costs it nothing.
    assert check_parity(model, via_pnnx, fp16=True, probe_size=32).max_abs < 1e-5


class DiesDuringExport(nn.Module):
    """Stands in for pnnx being OOM-killed: the child dies by SIGKILL while tracing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os.kill(os.getpid(), signal.SIGKILL)
        return x


class VanishesDuringExport(nn.Module):
    """Stands in for pnnx returning normally without writing anything (seen after an OOM kill)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os._exit(0)


def test_killed_pnnx_child_is_reported() -> None:
    with pytest.raises(ExportError, match="killed by signal 9"):
        export_with_pnnx(DiesDuringExport(), (1, 3, 8, 8), fp16=True)


def test_pnnx_without_files_is_reported() -> None:
    with pytest.raises(ExportError, match="without writing the ncnn files"):
        export_with_pnnx(VanishesDuringExport(), (1, 3, 8, 8), fp16=True)


def test_pnnx_route_keeps_the_official_x2_resize(tmp_path: Path, photo_crop) -> None:
    """animevideov3 x2 is the x4 net then a bicubic x0.5: traced through pnnx it stays one graph."""
    from realesr_portable.convert.api import convert_file
    from realesr_portable.model.catalog import OFFICIAL, official_model_dir

    param = official_model_dir() / f"{OFFICIAL['realesr-animevideov3-x2'][0]}.param"
    result = convert_file(param, tmp_path, name="x2", route="pnnx")
    assert result.route == "pnnx" and result.spec.scale == 2
    chw = to_chw(photo_crop("chelsea.png", 80, 150, 20, 24))
    ours = ncnn_run(load_files(result.param), chw)
    official = ncnn_run(load_files(param, ("data", "output")), chw)
    assert ours.shape == (3, 40, 48) and np.abs(ours - official).max() < 1e-5
