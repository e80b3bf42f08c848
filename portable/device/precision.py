"""Which ncnn precision options each device gets: the one place they are decided.

fp16 *storage* halves memory traffic and is accurate enough (weights and features rounded to fp16,
~58 dB or better); fp16 *arithmetic* accumulates in fp16 and is not: on an NVIDIA H200 (Vulkan
driver, ncnn 1.0.20261020) the official animevideov3-x4 graph on a whole 960x540 frame gave 38.98 dB
(max error 168 levels) with fp16 arithmetic against 72.9 dB with fp16 storage + fp32 arithmetic, at
the same speed. lavapipe does not show the error, so the policy itself is what the tests check.
fp16 arithmetic is therefore opt-in only (`--fp16-arith`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .select import Device


@dataclass(frozen=True)
class PrecisionOptions:
    """The ncnn `Option` fields this project sets (names as in ncnn)."""

    use_vulkan_compute: bool
    use_fp16_packed: bool
    use_fp16_storage: bool
    use_fp16_arithmetic: bool
    use_bf16_storage: bool
    use_bf16_packed: bool

    def describe(self) -> str:
        if not (self.use_fp16_storage or self.use_bf16_storage):
            return "fp32"
        storage = "fp16" if self.use_fp16_storage else "bf16"
        return f"{storage} storage, {'fp16' if self.use_fp16_arithmetic else 'fp32'} arithmetic"


def ncnn_options(device: Device, fp16_arith: bool = False, force_fp32: bool = False) -> PrecisionOptions:
    """Options for `device`. Vulkan: fp16 storage + fp32 arithmetic unless `fp16_arith` (opt-in,
    measured unsafe for animevideov3) or `force_fp32`. CPU: fp32, as ncnn's CPU path was measured
    (x86 has no fast fp16, and bf16 storage costs accuracy for no speed there); `force_fp32` wins
    over `fp16_arith` so a precision probe can always raise precision."""
    gpu = device.is_gpu
    half = gpu and not force_fp32
    return PrecisionOptions(
        use_vulkan_compute=gpu,
        use_fp16_packed=half,
        use_fp16_storage=half,
        use_fp16_arithmetic=half and fp16_arith,
        use_bf16_storage=False,
        use_bf16_packed=False,
    )


def apply_options(opt, options: PrecisionOptions) -> None:
    """Copy `options` onto an ncnn `Option` (before `load_param`, where ncnn reads them)."""
    for name, value in asdict(options).items():
        setattr(opt, name, value)
