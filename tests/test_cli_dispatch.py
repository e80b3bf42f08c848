"""`realesr-portable convert ...` goes to the converter, lazily, with a one-line error when the
convert extra (torch, pnnx) is missing; the runtime itself never imports torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

from realesr_portable import cli


def test_convert_is_dispatched_with_its_arguments(monkeypatch) -> None:
    seen = {}

    class FakeConvertCli:
        @staticmethod
        def main(argv: list[str]) -> int:
            seen["argv"] = argv
            return 3

    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name: FakeConvertCli if name == "realesr_portable.convert.cli" else real_import(name))
    assert cli.main(["convert", "model.pth", "-o", "out"]) == 3
    assert seen["argv"] == ["model.pth", "-o", "out"]


def test_missing_convert_extra_gives_one_line(monkeypatch, capsys) -> None:
    def no_torch(name: str):
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(importlib, "import_module", no_torch)
    assert cli.main(["convert", "model.pth"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "realesr-portable[convert]" in err and "torch" in err


def test_runtime_import_pulls_no_torch_or_converter() -> None:
    code = (
        "import sys\n"
        "import realesr_portable.cli, realesr_portable.api\n"
        "from realesr_portable.api import Upscaler\n"
        "Upscaler('realesr-animevideov3-x2', gpu=-1)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'pnnx', 'realesr_portable.convert', 'realesr_portable.trainer'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_python_m_runs_the_same_command() -> None:
    script = [sys.executable, "-c", "import sys; from realesr_portable.cli import main; sys.exit(main())"]
    module = [sys.executable, "-m", "realesr_portable"]
    for args in (["models"], ["--no-such-option"]):
        expected = subprocess.run(script + args, capture_output=True, text=True, timeout=120)
        got = subprocess.run(module + args, capture_output=True, text=True, timeout=120)
        assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert got.returncode == 2 and "--no-such-option" in got.stderr
