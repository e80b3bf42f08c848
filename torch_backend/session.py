"""`TorchSession`: the ncnn `Session`'s seam (`run(CHW float32) -> CHW float32`) served by torch.

The runtime's engine keeps the pre-pad, tiles, alpha, outscale and TTA; this session only runs
the net on one padded tile. `device_job` moves the pixel conversion next to the net as well, so
an image crosses the bus once each way in its own integer type instead of as float32 (the x4
output is 16x the input). Each calling thread gets its own CUDA stream and pinned upload buffer:
with two processing threads (`-j 1:2:2`, or the video/batch pipelines) one image's upload and
download overlap the other's compute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..convert.sidecar import tile_pad_for
from ..device.select import CPU_INDEX, Device, available_ram_mb, parse_gpu_option
from ..model.catalog import ModelFiles
from ..run.backend import BackendError, TorchOptions
from ..run.session import TileError
from ..run.tiler import Runner, TileJob, crop_runner
from .graphs import GraphCache
from .job import DeviceJob
from .net import Forward, load_net, load_weights_net, weights_files

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PROBE = 64  # side of the probe that measures memory per pixel (a multiple of every size_multiple)
_OOM_WORDS = ("out of memory", "can't allocate", "cannot allocate")


def torch_device(gpu: str | int | None, need_gpu: bool) -> torch.device:
    """`-g` for torch: auto (CUDA/ROCm device 0, else the CPU), -1 (CPU) or one device index."""
    ids = parse_gpu_option(gpu)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if ids is None:
        if count:
            return torch.device("cuda", 0)
        if need_gpu:
            raise BackendError("torch sees no CUDA/ROCm device")
        return torch.device("cpu")
    if ids == [CPU_INDEX]:
        return torch.device("cpu")
    if len(ids) > 1:
        raise BackendError(f"-g {gpu}: the torch backend runs one GPU per process (run several, or use --ray)")
    if ids[0] >= count:
        raise BackendError(f"-g {ids[0]}: torch sees {count} CUDA/ROCm device(s)")
    return torch.device("cuda", ids[0])


def _device_precision(gpu: str | int | None, need_gpu: bool, fp32: bool, threads: int | None,
                      options: TorchOptions) -> tuple[torch.device, str]:
    device = torch_device(gpu, need_gpu)
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)  # process-wide, as ncnn's option is per net
    return device, "fp32" if fp32 else options.precision or ("fp16" if device.type == "cuda" else "fp32")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or any(w in str(exc) for w in _OOM_WORDS)


class TorchSession:
    """A torch net ready to run tiles on one device; threads may share it (no per-call state)."""

    workers = 1
    segmenter = None  # the whole net per (super-)tile: the tile_pad gives seam-free context

    def __init__(self, model: ModelFiles, net: torch.nn.Module, forward: Forward, device: torch.device,
                 precision: str, options: TorchOptions) -> None:
        self.model = model
        self.spec = model.spec
        self.torch_device = device
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.options = options
        self.is_cuda = device.type == "cuda"
        net.to(device=device, dtype=self.dtype)
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        if options.channels_last:
            net.to(memory_format=torch.channels_last)
        if self.is_cuda and options.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # torch's process-wide switch
        if self.is_cuda and precision == "fp32":
            torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 (TF32 keeps 10 mantissa bits); process-wide
        call = torch.compile(forward, mode=options.compile, dynamic=False) if options.compile else forward
        self._call = call
        self._graphs = GraphCache(call) if options.cuda_graphs and self.is_cuda else None
        self._local = threading.local()
        self.net_bytes_px = self._measure_bytes_px(net, forward)
        self.device = self._describe_device()

    @classmethod
    def load(cls, model: ModelFiles, gpu: str | int | None, *, fp32: bool = False, threads: int | None = None,
             weights: bytes | None = None, options: TorchOptions = TorchOptions(), need_gpu: bool = False) -> TorchSession:
        """Import the model's weights (or `weights`, `--dn` blended) into its torch architecture."""
        device, precision = _device_precision(gpu, need_gpu, fp32, threads, options)
        net, forward = load_net(model, weights)
        return cls(model, net, forward, device, precision, options)

    @classmethod
    def load_weights(cls, path: Path, gpu: str | int | None, *, fp32: bool = False, threads: int | None = None,
                     options: TorchOptions = TorchOptions()) -> TorchSession:
        """A `.pth`/`.safetensors` run directly; the tile padding is measured here, on this device,
        where the family's receptive field is a loose bound (as `convert` measures it on ncnn)."""
        device, precision = _device_precision(gpu, False, fp32, threads, options)
        info, net = load_weights_net(path)
        session = cls(weights_files(path, info, 0), net, net, device, precision, options)
        session.model = weights_files(path, info, tile_pad_for(info, session.run).pad)
        session.spec = session.model.spec
        return session

    def _describe_device(self) -> Device:
        if not self.is_cuda:
            return Device(CPU_INDEX, "CPU", "cpu", available_ram_mb())
        index = self.torch_device.index or 0
        free, _ = torch.cuda.mem_get_info(index)
        return Device(index, torch.cuda.get_device_name(index), "rocm" if torch.version.hip else "cuda", free >> 20)

    def describe(self) -> str:
        """Device, backend and precision for the device line."""
        d = self.device
        where = (f"{d.kind.upper() if d.kind == 'cuda' else 'ROCm'} GPU {d.index}: {d.name} ({d.heap_budget_mb} MiB free)"
                 if self.is_cuda else f"CPU ({torch.get_num_threads()} threads)")
        switches = [name for name, on in (("channels_last", self.options.channels_last),
                                          ("CUDA graphs", self._graphs is not None),
                                          (f"compile={self.options.compile}", bool(self.options.compile))) if on]
        return f"{where}, backend torch {torch.__version__}, {self.precision}" + "".join(f", {s}" for s in switches)

    def _measure_bytes_px(self, net: torch.nn.Module, forward: Forward) -> float:
        """Memory per input pixel of one eager forward pass: measured on a GPU, estimated on the
        CPU (three times the largest activation: a layer's input, output and one kept skip)."""
        probe = torch.zeros(1, self.spec.in_channels, _PROBE, _PROBE, device=self.torch_device, dtype=self.dtype)
        probe = probe.contiguous(memory_format=self.memory_format)
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)
            base = torch.cuda.memory_allocated(self.torch_device)
            torch.cuda.reset_peak_memory_stats(self.torch_device)
            with torch.inference_mode():
                forward(probe)
            torch.cuda.synchronize(self.torch_device)
            return 1.25 * (torch.cuda.max_memory_allocated(self.torch_device) - base) / _PROBE**2
        largest = [0]

        def hook(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                largest[0] = max(largest[0], output.numel())

        handles = [m.register_forward_hook(hook) for m in net.modules()]
        try:
            with torch.inference_mode():
                forward(probe)
        finally:
            for handle in handles:
                handle.remove()
        return 3.0 * largest[0] * probe.element_size() / _PROBE**2

    @contextmanager
    def stream(self) -> Iterator[None]:
        """This thread's own CUDA stream (created on first use); nothing on the CPU."""
        if not self.is_cuda:
            yield
            return
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.torch_device)
        with torch.cuda.stream(stream):
            yield

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """An (h,w,C) uint8/uint16/float32 array on the device, through this thread's pinned buffer."""
        if array.dtype == np.uint16:  # torch's uint16 has few kernels: widen on the host
            array = array.astype(np.int32)
        if not self.is_cuda:  # a private copy: torch tensors must not wrap read-only arrays
            return torch.from_numpy(np.array(array, copy=True, order="C"))
        pinned = getattr(self._local, "pinned", None)
        if pinned is None or pinned.numel() < array.nbytes:
            pinned = self._local.pinned = torch.empty(array.nbytes, dtype=torch.uint8, pin_memory=True)
        dtype = torch.from_numpy(np.empty(0, array.dtype)).dtype
        staged = pinned[: array.nbytes].view(dtype).view(array.shape)
        staged.numpy()[...] = array  # the stream's last download finished, so the buffer is free
        return staged.to(self.torch_device, non_blocking=True)

    def run_tensor(self, chw: torch.Tensor) -> torch.Tensor:
        """(C,H,W) float on the device -> (C,H*s,W*s) float32 on the device; TileError when out of memory."""
        try:
            with self.stream(), torch.inference_mode():  # the stream that uploaded `chw`
                x = chw.to(self.dtype)[None].contiguous(memory_format=self.memory_format)
                y = self._graphs.run(x) if self._graphs is not None else self._call(x)
                return y[0].float()
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc):
                raise
            if self.is_cuda:
                torch.cuda.empty_cache()
            raise TileError(f"torch ran out of memory on a {chw.shape[2]}x{chw.shape[1]} tile") from None

    def run(self, chw: np.ndarray) -> np.ndarray:
        """Run one tile. `chw`: (C,H,W) float32 in the model's value range; returns (C,H*s,W*s) float32."""
        with self.stream():
            x = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)).to(self.torch_device)
            return self.run_tensor(x).cpu().numpy()

    def device_job(self, job: TileJob) -> tuple[TileJob, Runner]:
        """The same job with pixels converted on this device, and a runner that keeps tensors there."""
        same = {f.name: getattr(job, f.name) for f in fields(TileJob)}
        return DeviceJob(**same, session=self), crop_runner(self.run_tensor, self.spec.scale)

    def release(self) -> None:
        """Nothing to return: torch's caching allocator keeps blocks for the next image of the run."""
