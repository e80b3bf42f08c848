"""One loaded ncnn net on one device, callable from several threads.

Each call builds its own extractor, so a `Session` carries no per-call state and threads may share
it (results are identical; `extract` holds the GIL, so this is for sharing, not speed). Fed
arrays are copied once into Mats that ncnn owns (`_owned_mat`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..device.select import Device
from ..graph.analysis import Graph
from ..graph.check import check_graph, probe_sides
from ..graph.facts import graph_facts
from ..model.catalog import ModelFiles
from ..graph.ncnn_files import NcnnFormatError, NcnnParam, read_weights
from ..graph.params import GraphError
from ..device.quiet import quiet_stderr
from ..device.precision import apply_options, ncnn_options
from ..plan.cost import cache_key, device_cost
from ..plan.memory import memory_model
from ..plan.segments import EXTRACT_MACS, Segmenter
from ..model.spec import ModelSpec

if TYPE_CHECKING:
    from .tiler import TileJob


class ModelLoadError(UserError, ValueError):
    """The `.param`/`.bin` could not be loaded (missing, corrupt, or not matching each other)."""


class TileError(RuntimeError):
    """ncnn failed on one tile (typically out of memory); the tiler retries with a smaller tile."""


def _configure(opt, device: Device, fp32: bool, threads: int, fp16_arith: bool = False) -> None:
    apply_options(opt, ncnn_options(device, fp16_arith=fp16_arith, force_fp32=fp32))
    opt.num_threads = threads


def parse_model(param: Path, param_text: str) -> NcnnParam:
    """The one parse of a model's `.param` that the checks, the weights and the analysis share."""
    try:
        return NcnnParam.parse(param_text)
    except NcnnFormatError as exc:
        raise ModelLoadError(f"{param}: {exc}") from None


def validate_weights(param: Path, parsed: NcnnParam, data: bytes, in_channels: int = 3) -> Graph:
    """Refuse a `.bin` whose size does not match its `.param` (ncnn accepts a too-long one silently);
    return the analysed graph."""
    try:
        read_weights(parsed, data)
    except NcnnFormatError as exc:
        raise ModelLoadError(f"{param.with_suffix('.bin')}: {exc}") from None
    return Graph(parsed, in_channels)


def graph_pre_pad(parsed: NcnnParam, spec: ModelSpec) -> int:
    """Refuse (GraphError) a graph ncnn would crash on, or one whose output is not the spec's scale
    and channels; return the pre-padding its valid convolutions consume (0 for most; RealCUGAN
    18/14/19), with which the scale check then holds."""
    def check(pre_pad: int) -> None:
        check_graph(parsed, spec.in_channels, spec.input_blob, spec.output_blob, scale=spec.scale,
                    out_channels=spec.out_channels, sides=probe_sides(spec.tile_pad, spec.size_multiple),
                    pre_pad=pre_pad)

    try:
        check(0)
        return 0
    except GraphError as exc:
        refusal = exc
    # A graph smaller than scale x its input by a whole border (unpadded convolutions) is run on a
    # mirrored border of that size, as its own runner does; its other claims are checked again.
    try:
        facts = graph_facts(parsed, spec.in_channels)
        if not facts.pre_pad or facts.scale != spec.scale:
            raise refusal
        check(facts.pre_pad)
    except GraphError:
        raise refusal from None  # the plain check's reason
    return facts.pre_pad


def validate_graph(param: Path, parsed: NcnnParam, spec: ModelSpec) -> int:
    """`graph_pre_pad` with the model's path in its one-line error. Runs before ncnn sees the
    `.param`; the scale check covers every way a tile is run later."""
    try:
        return graph_pre_pad(parsed, spec)
    except GraphError as exc:
        raise ModelLoadError(f"{param}: {exc}") from None


class Session:
    """An ncnn net ready to run tiles: `run(CHW float32) -> CHW float32` on the model's scale.

    The seam every backend serves (run/backend.py): `spec`, `device`, `workers`, `segmenter`,
    `net_bytes_px`, `run`, `device_job`, `release`.
    """

    net_bytes_px = 0.0  # the segmenter sizes ncnn's memory per segment instead

    def __init__(
        self,
        model: ModelFiles,
        device: Device,
        fp32: bool = False,
        threads: int | None = None,
        weights: bytes | None = None,
        fp16_arith: bool = False,
    ) -> None:
        import ncnn

        self.model = model
        self.spec = model.spec
        self.device = device
        self.fp32 = fp32
        self.fp16_arith = fp16_arith
        self._ncnn = ncnn
        try:
            param_text = model.param.read_text(encoding="utf-8")
            data = weights if weights is not None else model.bin.read_bytes()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{model.param}: cannot read model files ({exc})") from None
        parsed = parse_model(model.param, param_text)
        # first: nothing reads an unchecked graph
        self.pre_pad = validate_graph(model.param, parsed, self.spec)
        self.graph = validate_weights(model.param, parsed, data, self.spec.in_channels)
        try:
            # working memory by the device's measured model: fp16 storage on Vulkan halves it
            memory = memory_model(ncnn_options(device, fp16_arith, fp32))
            self.segmenter: Segmenter | None = Segmenter(self.graph, self.spec.input_blob, self.spec.output_blob,
                                                         memory)
        except (ValueError, KeyError):
            self.segmenter = None  # a graph we cannot follow runs whole
        if self.pre_pad and self.segmenter is not None:
            # Segments would be fed the input without its mirrored border: the net runs whole per
            # tile, and the whole net's working memory sizes those tiles (run untiled if it fits).
            whole = self.segmenter.segment(0, len(self.graph.layers) - 1)
            self.net_bytes_px = whole.bytes_px
            self.segmenter = None
        # Whole-net tiles: the graph's exact context where every layer is local (unpadded
        # convolutions, deconvolutions and crops included), on origins that keep its strides' grid.
        self.net_context: int | None = None
        self.net_align = self.graph.stride()
        if self.segmenter is None:
            self.net_context = self.graph.net_context(self.spec.input_blob, self.spec.output_blob, self.pre_pad)
        # ncnn's own threads run each tile. Tiles in parallel from Python threads (one ncnn
        # thread each) would avoid per-layer barriers, but ncnn's Python `extract` holds the GIL:
        # measured, two threads took as long as one. `workers` stays the hook for that.
        cpus = max(1, threads or os.cpu_count() or 1)
        self.workers = 1
        net = ncnn.Net()
        _configure(net.opt, device, fp32, cpus, fp16_arith)
        if device.is_gpu:
            net.set_vulkan_device(device.index)
        with quiet_stderr():
            rc = net.load_param_mem(param_text)
        if rc != 0:
            raise ModelLoadError(f"{model.param}: not a valid ncnn .param file")
        if device.is_gpu and not net.opt.use_vulkan_compute:
            raise ModelLoadError(f"Vulkan device {device.index} ({device.name}) cannot run ncnn; use -g -1 for the CPU")
        # ncnn may reference the weight buffer without copying: keep it alive as long as the net.
        # Both stay readable for a second runner of the same checked model (run/resident.py).
        self.weights = data
        self.param_text = param_text
        with quiet_stderr():
            rc = net.load_model_mem(data)
        if rc not in (0, None):
            raise ModelLoadError(f"{model.bin}: ncnn could not load the weights")
        if self.spec.input_blob not in net.input_names() or self.spec.output_blob not in net.output_names():
            raise ModelLoadError(
                f"{model.param}: blobs {self.spec.input_blob!r}/{self.spec.output_blob!r} from the model spec "
                f"are not in the .param (inputs {net.input_names()}, outputs {net.output_names()})"
            )
        self._net = net
        self._call_macs: float | None = None
        # Our own (thread-safe) pools, warm across calls and across images of one shape, emptied
        # by `release()` when the shape changes (engine.py): the net's internal pool keeps every
        # freed block for good, and tiles of many shapes would pile up beyond the memory budget.
        # Fresh pools per call cost ~15%.
        self._pools = [] if device.is_gpu else [ncnn.PoolAllocator(), ncnn.PoolAllocator()]
        for pool in self._pools:
            # Reuse a free block for any request of at least half its size (ncnn's default: 3/4):
            # the trunk's blobs come in many sizes; measured on x4plus at 256x256, peak RSS
            # 1653 -> 1519 MiB at the same speed.
            pool.set_size_compare_ratio(0.5)
        self.residual = bool(self.pre_pad) and self._returns_residual()  # RealCUGAN x4
        self.release()

    def call_macs(self) -> float:
        """The planner's per-call cost on this device (segments.py's unit). The CPU keeps the
        constant measured there; a Vulkan device is calibrated once per device, model and options
        (plan/cost.py, cached on disk) because a GPU call costs far more relative to its compute."""
        if not self.device.is_gpu:
            return EXTRACT_MACS
        if self._call_macs is None:
            model = self.model.param.read_bytes() + self.weights
            options = ncnn_options(self.device, self.fp16_arith, self.fp32).describe()
            key = cache_key(model, self.device.name, options)
            rng = np.random.default_rng(0)

            def run(side: int) -> None:
                self.run(rng.random((self.spec.in_channels, side, side), dtype=np.float32))
                self.release()

            macs = self.graph.macs_per_pixel(0, len(self.graph.layers) - 1)
            self._call_macs = device_cost(key, run).call_macs(macs)
        return self._call_macs

    def device_job(self, job: TileJob) -> None:
        """ncnn converts pixels on the host: the job stays as it is."""
        return None

    def release(self) -> None:
        """Return the memory pooled by finished calls; ncnn's pool frees only unused blocks, so
        calls running in other threads keep theirs."""
        for pool in self._pools:
            pool.clear()

    def extract(self, feed: dict[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        """Feed any blobs (ncnn then computes only what lies downstream of them), extract `outputs`."""
        results = []
        pools = self._pools
        with self._net.create_extractor() as ex:
            if pools:
                ex.set_blob_allocator(pools[0])
                ex.set_workspace_allocator(pools[1])
            for name, data in feed.items():
                ex.input(name, self._owned_mat(data))
            for name in outputs:
                rc, out = ex.extract(name)
                if rc != 0:
                    shape = next(iter(feed.values())).shape
                    raise TileError(f"ncnn failed on a {shape[2]}x{shape[1]} tile (code {rc})")
                results.append(np.array(out, dtype=np.float32, copy=True))
                del out
            ex.clear()
        return results

    def _owned_mat(self, data: np.ndarray):
        """A (C,h,w) array (a tile's slice of a stored map) copied once into a Mat that ncnn owns:
        Mat(ndarray) wraps without a reference count, and ncnn's in-place layers dereference that
        count (a fed blob consumed by PReLU crashes). Writing into the new Mat's view is one copy,
        not a contiguous copy and then a clone."""
        mat = self._ncnn.Mat(data.shape[2], data.shape[1], data.shape[0])
        if mat.empty():  # ncnn's allocation failed: the tiler retries smaller
            raise TileError(f"out of memory for a {data.shape[2]}x{data.shape[1]} tile's input")
        np.asarray(mat)[...] = data
        return mat

    def _returns_residual(self) -> bool:
        """Whether the net returns only a correction to the nearest-upscaled input, which its
        own runner adds (realcugan-ncnn-vulkan does for its x4 graphs): measured on flat inputs at
        1/4, 1/2 and 3/4 of the range, which an image model returns about unchanged and a
        residual one as ~0 everywhere (RealCUGAN x4: |out| <= 0.02; x2/x3: the input level)."""
        if self.spec.in_channels != self.spec.out_channels:
            return False
        lo, hi = self.spec.value_range
        side = 16 * self.spec.size_multiple
        for level in (0.25, 0.5, 0.75):
            out = self._run_net(np.full((self.spec.in_channels, side, side), lo + level * (hi - lo), np.float32))
            if not float(np.abs(out - lo).max()) < 0.05 * (hi - lo):
                return False
        return True

    def run(self, chw: np.ndarray) -> np.ndarray:
        """Run one tile. `chw`: (C,H,W) in the model's value range; returns (C,H*s,W*s) float32."""
        result = self._run_net(chw)
        if self.residual:
            s = self.spec.scale
            result += np.repeat(np.repeat(chw, s, axis=1), s, axis=2) - self.spec.value_range[0]
        return result

    def _run_net(self, chw: np.ndarray) -> np.ndarray:
        """The net alone on one tile (plus the pre-padding it consumes)."""
        if self.pre_pad:  # mirrored as realcugan-ncnn-vulkan does; the graph consumes it
            p = self.pre_pad
            chw = np.pad(chw, ((0, 0), (p, p), (p, p)), mode="reflect" if min(chw.shape[1:]) > p else "symmetric")
        (result,) = self.extract({self.spec.input_blob: chw}, [self.spec.output_blob])
        p2 = 2 * self.pre_pad
        expected = (self.spec.out_channels, (chw.shape[1] - p2) * self.spec.scale, (chw.shape[2] - p2) * self.spec.scale)
        if result.shape != expected:
            raise ModelLoadError(
                f"{self.model.param}: output {result.shape} does not match the spec's scale x{self.spec.scale}"
            )
        return result
