"""Small models and ncnn helpers shared by the export, round-trip and convert-CLI tests."""

from __future__ import annotations

from pathlib import Path

import ncnn
import numpy as np
import torch
from torch import nn

from realesr_portable.convert.detect import ArchInfo, arch_info, build_model
from realesr_portable.convert.direct_writer import NcnnModel


def rrdb_info(scale: int, blocks: int = 2, feat: int = 16, grow: int = 8, channels: int = 3) -> ArchInfo:
    params = {"num_in_ch": channels, "num_out_ch": channels, "scale": scale, "num_feat": feat, "num_block": blocks, "num_grow_ch": grow}
    return arch_info("RRDBNet", params)


def srvgg_info(upscale: int, act: str = "prelu", feat: int = 16, convs: int = 3, channels: int = 3) -> ArchInfo:
    params = {"num_in_ch": channels, "num_out_ch": channels, "num_feat": feat, "num_conv": convs, "upscale": upscale, "act_type": act}
    return arch_info("SRVGGNetCompact", params)


#: Conv weights are scaled up from PyTorch's default init: with it, an RRDBNet's body moves the
#: output by ~1e-5 (a wrong graph would pass a 1e-4 parity check); x2 gives image-scale outputs.
CONV_GAIN = 2.0


def small_model(info: ArchInfo, seed: int = 0) -> nn.Module:
    """A random-init model whose every weight visibly matters (see CONV_GAIN; PReLU slopes random)."""
    torch.manual_seed(seed)
    model = build_model(info).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                p.mul_(CONV_GAIN)
            elif info.name == "SRVGGNetCompact" and not name.endswith("bias"):
                p.uniform_(-0.3, 0.5)
    return model


def torch_run(model: nn.Module, chw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(chw)).unsqueeze(0))[0].numpy()


def load_files(param: Path, blobs: tuple[str, str] | None = None) -> NcnnModel:
    """An ncnn model from disk; blob names from its sidecar unless given."""
    if blobs is None:
        from realesr_portable.model.spec import ModelSpec

        spec = ModelSpec.load(param.with_suffix(".json"))
        blobs = (spec.input_blob, spec.output_blob)
    return NcnnModel(param.read_text(), param.with_suffix(".bin").read_bytes(), *blobs)


def ncnn_run(model: NcnnModel, chw: np.ndarray, exact: bool = True) -> np.ndarray:
    """ncnn called directly (an oracle independent of the runtime's Session), fp32 when `exact`."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    if exact:
        for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
            setattr(net.opt, flag, False)
    assert net.load_param_mem(model.param_text) == 0
    net.load_model_mem(model.bin_bytes)
    data = np.ascontiguousarray(chw, dtype=np.float32)
    with net.create_extractor() as ex:
        ex.input(model.input_blob, ncnn.Mat(data))
        rc, out = ex.extract(model.output_blob)
        assert rc == 0
        return np.array(out, dtype=np.float32, copy=True)


def to_chw(hwc_uint8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hwc_uint8.transpose(2, 0, 1), dtype=np.float32) / 255.0


def to_uint8(chw: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(chw * 255.0), 0, 255).astype(np.uint8)
