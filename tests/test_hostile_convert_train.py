"""Hostile input, round 2 (issue 17): `convert` onto its own source, NaN and fp16-overflowing weights,
and trainer checkpoints that are empty, corrupt, or from a changed network.

Each case must end in one line and a known exit code, with every input file byte-identical
afterwards; the trainer must fall back past an unreadable checkpoint and say so on stderr.
"""

from __future__ import annotations

import os
import shutil
import struct
import warnings
from pathlib import Path

import pytest
import torch

from export_support import small_model, srvgg_info
from realesr_portable.convert.api import export_state_dict
from realesr_portable.convert.cli import main as convert_main
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.trainer import checkpoint as ckpt
from realesr_portable.trainer.cli import main as train_main
from train_support import make_folder, make_vgg_file, one_thread, tiny_config, write_config

_single_thread = pytest.fixture(autouse=True)(one_thread)


def _convert(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `convert` with RuntimeWarnings as errors (a warning is a second, unasked-for line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code = convert_main(["convert", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return code, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def ncnn_pair(tmp_path: Path) -> Path:
    """A converted tiny model (`src/tiny.param` + `.bin` + `.json`), as a user would have it."""
    state = small_model(srvgg_info(2, feat=8, convs=2)).state_dict()
    return export_state_dict(state, tmp_path / "src", "tiny", fp16=False, verify=False, tile_pad=4).param


@pytest.mark.parametrize("pointed_at", [".param", ".bin"])
def test_convert_into_the_sources_own_folder_is_refused(ncnn_pair: Path, pointed_at: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(ncnn_pair.parent)
    code, err = _convert([ncnn_pair.with_suffix(pointed_at), "-o", ncnn_pair.parent], capsys)
    assert code == 2 and "output would overwrite the input" in err and "tiny.param" in err, err
    assert _snapshot(ncnn_pair.parent) == before  # nothing replaced, nothing added (no tiny.pth)


def test_convert_onto_a_hard_link_of_the_source_is_refused(ncnn_pair: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Another path, same inode: writing `linked/other.bin` would replace the source's bytes."""
    linked = tmp_path / "linked"
    linked.mkdir()
    os.link(ncnn_pair.with_suffix(".bin"), linked / "other.bin")
    before = _snapshot(ncnn_pair.parent)
    code, err = _convert([ncnn_pair, "-o", linked, "--name", "other"], capsys)
    assert code == 2 and f"input {ncnn_pair.with_suffix('.bin')}" in err, err
    assert _snapshot(ncnn_pair.parent) == before and sorted(p.name for p in linked.iterdir()) == ["other.bin"]
    # the same folder under another name is fine: the source stays as it was
    code = convert_main(["convert", str(ncnn_pair), "-o", str(ncnn_pair.parent), "--name", "copy", "--no-verify"])
    assert code == 0 and (ncnn_pair.parent / "copy.pth").is_file()
    assert {k: v for k, v in _snapshot(ncnn_pair.parent).items() if not k.startswith("copy.")} == before


def _weights_with(tmp_path: Path, value: float, name: str) -> Path:
    state = small_model(srvgg_info(2, feat=8, convs=2)).state_dict()
    state["body.2.weight"][0, 0, 1, 1] = value
    return save_state_dict(state, tmp_path / f"{name}.pth")


@pytest.mark.parametrize("verify", ["--verify", "--no-verify"])
@pytest.mark.parametrize(("value", "fp32", "expected"), [
    (float("nan"), False, "weights contain NaN: body.2.weight has 1 NaN value(s)"),
    (float("inf"), True, "weights contain infinity: body.2.weight"),
    (1e30, False, "weights overflow fp16: body.2.weight holds 1e+30 (fp16 max 65504); use --fp32"),
    (7e4, False, "weights overflow fp16: body.2.weight holds 7e+04"),
])
def test_weights_that_cannot_be_stored_are_refused_by_name(value: float, fp32: bool, expected: str, verify: str,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a RuntimeWarning naming our source file, then "max abs nan"; with --no-verify, exit 0
    and a model that outputs NaN."""
    src = _weights_with(tmp_path, value, "odd")
    code, err = _convert([src, "-o", tmp_path / "out", verify] + (["--fp32"] if fp32 else []), capsys)
    assert code == 1 and expected in err and "RuntimeWarning" not in err, err
    assert not (tmp_path / "out").exists()


def test_nan_in_an_ncnn_source_is_refused_before_the_import_check(ncnn_pair: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bin_path = ncnn_pair.with_suffix(".bin")
    data = bytearray(bin_path.read_bytes())
    data[-4:] = struct.pack("<f", float("nan"))  # the last value of the fp32 file: the last conv's bias
    bin_path.write_bytes(bytes(data))
    code, err = _convert([ncnn_pair, "-o", tmp_path / "out"], capsys)
    assert code == 1 and "weights contain NaN" in err and "max abs" not in err, err
    assert not (tmp_path / "out").exists()


# --- trainer checkpoints ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished 2-iteration run of a tiny compact generator with checkpoints at 1 and 2."""
    root = tmp_path_factory.mktemp("ckpt_run")
    make_folder(root / "hr", 40)
    raw = tiny_config(root, make_vgg_file(root / "vgg.pth"), stage="esrnet", train={"total_iter": 2},
                      data={"dataroot_gt": str(root / "hr")}, checkpoint={"save_every": 1, "keep_last": 3})
    raw["network_g"] = {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2}
    with torch.random.fork_rng():
        assert train_main(["--config", str(write_config(root / "run.yml", raw))], "test") == 0
    return root / "exp" / "tiny", raw


def _copy_run(trained: tuple[Path, dict], tmp_path: Path, **changes: dict) -> tuple[Path, Path]:
    """The finished run copied under tmp_path, with a config pointing at it (and `changes` applied)."""
    run_dir, raw = trained
    root = tmp_path / "exp"
    shutil.copytree(run_dir, root / "tiny")
    cfg = {**raw, "path": {**raw["path"], "experiments_root": str(root)}, **changes}
    return root / "tiny", write_config(tmp_path / "run.yml", cfg)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_auto_falls_back_past_an_unreadable_newest_checkpoint(damage: str, trained: tuple[Path, dict], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, cfg_path = _copy_run(trained, tmp_path)
    newest, previous = ckpt.checkpoint_path(run_dir, 2), ckpt.checkpoint_path(run_dir, 1)
    newest.write_bytes(b"" if damage == "empty" else newest.read_bytes()[: newest.stat().st_size // 2])
    code = train_main(["--config", str(cfg_path), "--resume", "auto"], "test")
    out, err = capsys.readouterr()
    assert code == 0, err  # before: "internal error: IndexError", exit 1, for the empty file
    (line,) = err.strip().splitlines()
    assert line.startswith(f"note: skipped: cannot read checkpoint {newest}: ") and line.endswith(f"; using {previous}")
    assert ("the file is empty (0 bytes)" in line) == (damage == "empty")
    assert f"resumed from {previous} at iteration 1" in out
    assert "note: skipped: cannot read checkpoint" in (run_dir / "train.log").read_text()
    assert ckpt.load(newest)["iteration"] == 2  # iteration 2 trained again and written whole


def test_only_unreadable_checkpoints_is_one_line_error(trained: tuple[Path, dict], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, cfg_path = _copy_run(trained, tmp_path)
    for _, path in ckpt.list_checkpoints(run_dir):
        path.write_bytes(b"")
    code = train_main(["--config", str(cfg_path), "--resume", "auto"], "test")
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("realesr-portable train: error: no readable checkpoint in ") and "0 bytes" in err and "\n" not in err
    newest = ckpt.checkpoint_path(run_dir, 2)
    code = train_main(["--config", str(cfg_path), "--resume", str(newest)], "test")  # named explicitly: no fallback
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"realesr-portable train: error: cannot read checkpoint {newest}: the file is empty (0 bytes)"


@pytest.mark.parametrize("export", [False, True])
def test_resume_with_a_changed_network_names_the_first_difference(export: bool, trained: tuple[Path, dict], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, cfg_path = _copy_run(trained, tmp_path, network_g={"type": "SRVGGNetCompact", "num_feat": 16, "num_conv": 2})
    before = _snapshot(ckpt.checkpoint_dir(run_dir))
    code = train_main(["--config", str(cfg_path), "--export" if export else "--resume=auto"], "test")
    err = capsys.readouterr().err.strip()
    key = "params_ema" if export else "params"
    assert code == 1 and "\n" not in err, err
    assert f"checkpoint {ckpt.checkpoint_path(run_dir, 2)} does not match the configured network ('{key}')" in err
    assert "body.0.weight [8, 3, 3, 3] (expected [16, 3, 3, 3])" in err
    assert _snapshot(ckpt.checkpoint_dir(run_dir)) == before
