#!/usr/bin/env python
"""Train Real-ESRNet / Real-ESRGAN: `python trainer/train.py --config trainer/presets/realesrgan_x4plus.yml`.

    python trainer/train.py --config FILE [--set key=value ...] [--resume auto|CKPT] [--vgg-weights PATH]
    torchrun --nproc_per_node=N trainer/train.py --config FILE ...      # DDP, one process per GPU
    python trainer/train.py --config FILE --export [--resume CKPT]      # export the newest EMA generator

Works from a checkout without installing: when `realesr_portable` is not importable from this
checkout, the folders beside this file are registered as the package (`portable/` as
`realesr_portable`, `archs/`, `convert/`, `torch_backend/` and `trainer/` as its subpackages). Errors
print one line `train.py: error: ...` and exit by the runtime's one table, as `realesr-portable
train` does (2 for a bad config or bad usage, 1 for a failure during the work, 130/143 interrupted).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _register(name: str, folder: Path) -> None:
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if "." in name:
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, module)


def bootstrap_checkout() -> str:
    """Make `realesr_portable` importable from this checkout; return where it comes from."""
    # Running a script puts trainer/ first on sys.path; its module names (config, data, ...) must
    # not shadow other top-level modules.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    root = HERE.parent
    spec = importlib.util.find_spec("realesr_portable.trainer") if importlib.util.find_spec("realesr_portable") else None
    if spec is not None and spec.origin and Path(spec.origin).resolve().parent == HERE:
        return "installed package (this checkout)"
    for name in [m for m in sys.modules if m == "realesr_portable" or m.startswith("realesr_portable.")]:
        del sys.modules[name]
    _register("realesr_portable", root / "portable")
    _register("realesr_portable.archs", root / "archs")
    _register("realesr_portable.convert", root / "convert")
    if (root / "torch_backend").is_dir():  # the torch backend's folder (bench/torch_speed.py needs it)
        _register("realesr_portable.torch_backend", root / "torch_backend")
    _register("realesr_portable.trainer", HERE)
    return f"checkout {root}"


def main(argv: list[str] | None = None) -> int:
    origin = bootstrap_checkout() if __name__ == "__main__" else "package"
    from realesr_portable.trainer.cli import main as train_main

    return train_main(argv, origin, prog="train.py")


if __name__ == "__main__":
    sys.exit(main())
