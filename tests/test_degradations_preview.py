"""The preview grid command, run in-process."""

from __future__ import annotations

from PIL import Image

from realesr_portable.trainer.degradations.preview import main


def test_writes_grid_png(tmp_path, capsys):
    out = tmp_path / "sub" / "grid.png"
    assert main(["-o", str(out), "--rows", "2", "--size", "64", "--seed", "3"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (5 * 64, 18 + 2 * 64)
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind
    assert "wrote" in capsys.readouterr().out


def test_bad_input_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["-o", str(out), str(tmp_path / "missing.png")]) == 2
    assert main(["-o", str(out), "--size", "66"]) == 2
    cfg = tmp_path / "bad.yml"
    cfg.write_text("first:\n  blur_porb: 1\n")
    assert main(["-o", str(out), "--config", str(cfg), "--rows", "1", "--size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("realesr-portable preview: error: ") for line in err)
    assert "first.blur_porb" in err[2]
    assert not out.exists()
