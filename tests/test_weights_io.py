"""Safe weight loading: restricted unpickler, safetensors, checkpoint unwrapping, one-line errors."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from realesr_portable.convert.weights_io import WeightsError, load_state_dict, save_state_dict


class _WritesMarker:
    """Unpickling this calls exec(): the payload a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105 - the attack itself
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _sd() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2), "conv.bias": torch.ones(1)}


def _assert_one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("wrapper", [None, "params_ema", "params", "state_dict"])
def test_unwraps_checkpoint_layouts(tmp_path: Path, wrapper: str | None) -> None:
    path = tmp_path / "w.pth"
    torch.save(_sd() if wrapper is None else {wrapper: _sd(), "iter": 5}, path)
    loaded = load_state_dict(path)
    assert set(loaded) == {"conv.weight", "conv.bias"}
    assert torch.equal(loaded["conv.weight"], _sd()["conv.weight"])


def test_prefers_ema_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    ema = {k: v + 1 for k, v in _sd().items()}
    torch.save({"params": _sd(), "params_ema": ema}, path)
    assert torch.equal(load_state_dict(path)["conv.bias"], ema["conv.bias"])


def test_strips_ddp_prefix(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"params": {f"module.{k}": v for k, v in _sd().items()}}, path)
    assert set(load_state_dict(path)) == {"conv.weight", "conv.bias"}


def test_safetensors_and_save_round_trip(tmp_path: Path) -> None:
    for name in ("w.safetensors", "w.pth"):
        path = save_state_dict(_sd(), tmp_path / name)
        loaded = load_state_dict(path)
        assert all(torch.equal(loaded[k], v) for k, v in _sd().items())
    assert list(tmp_path.glob(".*.tmp")) == []  # temp files renamed or removed
    raw = torch.load(tmp_path / "w.pth", weights_only=True)
    assert set(raw) == {"params_ema"}  # the official release layout


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    torch.save({"params_ema": _sd(), "hook": _WritesMarker(marker)}, evil)
    with pytest.raises(WeightsError) as err:
        load_state_dict(evil)
    assert "refused" in _assert_one_line(err)
    assert not marker.exists()
    # The payload is real: an unrestricted load (in a child process) does write the marker.
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, cwd=tmp_path)
    assert marker.read_text() == "pwned"


def test_malicious_legacy_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"params": _WritesMarker(marker)}))
    with pytest.raises(WeightsError, match="refused"):
        load_state_dict(evil)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    whole = save_state_dict(_sd(), tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsError) as err:
        load_state_dict(cut)
    assert "truncated" in _assert_one_line(err)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        load_state_dict(tmp_path / "empty.pth")


@pytest.mark.parametrize("payload", [[1, 2, 3], {"lr": 0.1, "iter": 7}, {"params": {"a": torch.zeros(1), "b": 3}}])
def test_not_a_state_dict(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "x.pth"
    torch.save(payload, path)
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    assert "not a state_dict" in _assert_one_line(err)


def _to_old_esrgan_keys(key: str) -> str:
    """Our RRDBNet key -> the original ESRGAN code's key (written independently of the loader)."""
    outer = {"conv_first": "model.0", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8",
             "conv_last": "model.10"}
    name, kind = key.rsplit(".", 1)
    if name in outer:
        return f"{outer[name]}.{kind}"
    if name == "conv_body":
        return f"model.1.sub.2.{kind}"  # after the 2 RRDBs of the test model
    _, block, rdb, conv = name.split(".")
    return f"model.1.sub.{block}.{rdb.upper()}.{conv}.0.{kind}"


def test_old_esrgan_layout_is_renamed(tmp_path: Path) -> None:
    from realesr_portable.convert.detect import detect_architecture
    from realesr_portable.archs.rrdbnet.module import RRDBNet

    ours = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict()
    path = tmp_path / "4x_old.pth"
    torch.save({_to_old_esrgan_keys(k): v for k, v in ours.items()}, path)
    loaded = load_state_dict(path)
    assert loaded.keys() == ours.keys()
    assert all(torch.equal(loaded[k], v) for k, v in ours.items())
    assert detect_architecture(loaded).params["num_block"] == 2


def test_whole_pickled_module_is_refused_with_a_hint(tmp_path: Path) -> None:
    from realesr_portable.archs.srvgg.module import SRVGGNetCompact

    path = tmp_path / "whole_model.pth"
    torch.save(SRVGGNetCompact(num_feat=4, num_conv=1), path)
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    assert "state_dict()" in _assert_one_line(err)
