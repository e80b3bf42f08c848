"""Hostile input to the C++ runner (issue 17 items 1, 11-16 and "-i given twice").

Each case once crashed it, exited 0 with a wrong result, or printed more than one line: now every
one is one `error:` line, a non-zero exit, no output file and the input untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_support import build_runner, run_cli
from fuzz_cases import CONV2, RESIZE
from hostile_support import edited_model, official_sidecar, replace_once

V3 = "realesr-animevideov3-x2"


@pytest.fixture(scope="module")
def runner() -> Path:
    return build_runner("x86_64")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)).save(path)
    return path


def _model(tmp_path: Path, edit=lambda t: t, sidecar: dict | None = None) -> Path:
    folder = Path(tempfile.mkdtemp(dir=tmp_path, prefix="model"))
    return edited_model(folder, V3, edit, sidecar)


def _refused(proc, code: int, message: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], proc.stderr
    assert "FATAL" not in proc.stderr and "Traceback" not in proc.stderr


def _nothing_written(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith("out")] == []


def test_output_onto_the_input_is_refused(runner: Path, photo: Path, tmp_path: Path) -> None:
    before = photo.read_bytes()
    link, symlink = tmp_path / "hardlink.png", tmp_path / "symlink.png"
    os.link(photo, link)
    symlink.symlink_to(photo)
    for target in (photo, link, symlink, tmp_path / "." / "in.png"):
        proc = run_cli(runner, ["-i", photo, "-o", target, "-m", _model(tmp_path)])
        _refused(proc, 2, "output would overwrite the input")
        assert photo.read_bytes() == before


@pytest.mark.parametrize("value", ["100000", "50000", "257", "0", "-3", "2147483647", "99999999999999999999", "2x", ""])
def test_threads_out_of_range_is_one_line(runner: Path, photo: Path, tmp_path: Path, value: str) -> None:
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path), "--threads", value])
    _refused(proc, 2, "--threads needs an integer in 1..256")
    _nothing_written(tmp_path)


def test_threads_at_the_limits_run(runner: Path, photo: Path, tmp_path: Path) -> None:
    for value in ("1", "256"):
        out = tmp_path / f"out{value}.png"
        proc = run_cli(runner, ["-i", photo, "-o", out, "-m", _model(tmp_path), "--threads", value])
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        with Image.open(out) as im:
            assert im.size == (14, 18)


def _conv2(edit: str) -> str:
    key = edit.split("=")[0]
    return " ".join(t for t in CONV2.split() if not t.startswith(f"{key}=")) + f" {edit}"


GRAPHS = {
    "dilation 1000": (replace_once(CONV2, _conv2("2=1000")), "layer Conv_2: param 2=1000 is outside 1..16"),
    "pad 100000": (replace_once(CONV2, _conv2("4=100000")), "layer Conv_2: param 4=100000 is outside -234..256"),
    "weights for 32 channels": (replace_once(CONV2, _conv2("6=18432")), "weight count 18432 does not fit 64 input channels"),
    "interp scale 100000": (replace_once(RESIZE, RESIZE.replace("1=4.000000e+00 2=4.000000e+00", "1=1.000000e+05 2=1.000000e+05")),
                            "layer Resize_37: param 1=1.000000e+05 is outside 0.0625..16"),
}


@pytest.mark.parametrize("case", list(GRAPHS))
def test_graphs_ncnn_would_crash_on_are_refused(runner: Path, photo: Path, tmp_path: Path, case: str) -> None:
    edit, message = GRAPHS[case]
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path, edit)])
    _refused(proc, 1, message)
    _nothing_written(tmp_path)


SIDECARS = {
    "size_multiple 100000": ({"size_multiple": 100000}, "size_multiple 100000 is not in 1..64"),
    "in_channels 1 for an RGB graph": ({"in_channels": 1}, "weight count 1728 does not fit 1 input channels"),
    "tile_pad 5000": ({"tile_pad": 5000}, "tile_pad 5000 is not in 0..1024"),
    "scale 2**40": ({"scale": 2**40}, "scale 1099511627776 is not in 1..16"),
    "scale 2**63 (beyond int64)": ({"scale": 2**63}, "is not in 1..16"),
}


@pytest.mark.parametrize("case", list(SIDECARS))
def test_sidecars_out_of_range_are_refused(runner: Path, photo: Path, tmp_path: Path, case: str) -> None:
    change, message = SIDECARS[case]
    param = _model(tmp_path, sidecar={**official_sidecar(V3), **change})
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", param])
    _refused(proc, 1, message)
    _nothing_written(tmp_path)


def test_jpeg_output_is_jpeg_and_unknown_formats_are_refused(runner: Path, photo: Path, tmp_path: Path) -> None:
    param = _model(tmp_path)
    for name in ("out.jpg", "out.JPEG"):
        proc = run_cli(runner, ["-i", photo, "-o", tmp_path / name, "-m", param])
        assert proc.returncode == 0, proc.stderr
        with Image.open(tmp_path / name) as im:
            assert im.format == "JPEG" and im.size == (14, 18)
        png = tmp_path / "ref.png"
        assert run_cli(runner, ["-i", photo, "-o", png, "-m", param]).returncode == 0
        with Image.open(tmp_path / name) as im, Image.open(png) as ref:
            diff = np.abs(np.asarray(im, dtype=np.int16) - np.asarray(ref, dtype=np.int16))
        assert diff.mean() < 8  # quality 95: the same picture, not bit-equal
    for name in ("out.webp", "out", "out.png.txt"):
        proc = run_cli(runner, ["-i", photo, "-o", tmp_path / name, "-m", param])
        _refused(proc, 2, "unsupported output format")
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("flag", ["-i", "-o", "-m", "-t", "--threads", "--fp32"])
def test_a_flag_given_twice_is_refused(runner: Path, photo: Path, tmp_path: Path, flag: str) -> None:
    param = _model(tmp_path)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(other)
    values = {"-i": [photo, other], "-o": [tmp_path / "out.png", tmp_path / "out2.png"], "-m": [param, param],
              "-t": ["0", "4"], "--threads": ["1", "2"], "--fp32": []}[flag]
    args = ["-i", photo, "-o", tmp_path / "out.png", "-m", param]
    if flag in ("-i", "-o", "-m"):
        extra = [flag, values[1]]
    else:
        extra = [flag, *values[:1], flag, *values[1:]]
    proc = run_cli(runner, args + extra)
    _refused(proc, 2, f"{flag} given twice")
    _nothing_written(tmp_path)


def test_a_failed_write_leaves_no_partial_file(runner: Path, photo: Path, tmp_path: Path) -> None:
    """The output goes to a temporary file renamed at the end: a target that cannot be replaced
    (a folder named out.png) leaves neither it changed nor a temporary file behind."""
    (tmp_path / "out.png").mkdir()
    proc = run_cli(runner, ["-i", photo, "-o", tmp_path / "out.png", "-m", _model(tmp_path)])
    _refused(proc, 1, "cannot write")
    assert (tmp_path / "out.png").is_dir() and not list(tmp_path.glob("out.png.*"))


def test_help_and_no_arguments(runner: Path) -> None:
    helped = run_cli(runner, ["--help"])
    assert helped.returncode == 0 and helped.stdout.startswith("usage: ") and helped.stderr == ""
    bare = run_cli(runner, [])
    assert bare.returncode == 2 and bare.stderr.startswith("usage: ")


def test_a_tile_out_of_memory_is_one_line(runner: Path, tmp_path: Path) -> None:
    """A tile ncnn cannot allocate (here: a 400 MB address-space limit) made it print "FATAL ERROR!
    pool allocator destroyed too early" before the runner's own line (issue 17 item 16)."""
    import resource
    import subprocess

    src = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(src)
    limit = 400 << 20
    proc = subprocess.run([str(runner), "-i", str(src), "-o", str(tmp_path / "out.png"), "-m", str(_model(tmp_path)),
                           "--threads", "1", "--fp32"], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    _refused(proc, 1, "ncnn failed on a 710x710 tile")
    _nothing_written(tmp_path)
