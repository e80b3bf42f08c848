"""`--ray` / `upscale_many` on a real local Ray (2 CPUs): same bytes as the CLI, resume, faults.

One Ray is started for the module (start-up takes seconds) and shut down at the end. Inputs are
24x24 crops of real photos; the model is the small realesr-animevideov3 x2 on the CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ray
from realesr_portable.batch.pipeline import UsageError
from realesr_portable.cli import main
from realesr_portable.distributed import upscale_many
from realesr_portable.distributed.run import size_actors
from realesr_portable.distributed.worker import assigned_vulkan_device
from realesr_portable.run.options import UpscaleOptions

CLI_MODEL = ["-n", "realesr-animevideov3", "-s", "2", "-g", "-1"]
MODEL = {"model": "realesr-animevideov3", "outscale": 2, "gpu": -1}
CROPS = [("astronaut.png", 40, 180), ("chelsea.png", 60, 120), ("coffee.png", 120, 260),
         ("camera.png", 100, 200), ("rocket.jpg", 200, 300), ("astronaut.png", 300, 300)]


def _crop(name: str, top: int, left: int, size: int = 24) -> Image.Image:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / name) as im:
        im.load()
        return im.crop((left, top, left + size, top + size))


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, address="local")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/: gray, RGB, RGBA and JPEG crops of real photos; broken.png: a truncated PNG."""
    root = tmp_path_factory.mktemp("photos")
    good = root / "good"
    good.mkdir()
    for i, (name, top, left) in enumerate(CROPS):
        im = _crop(name, top, left)
        if i == 5:  # RGBA: alpha goes its own way (bicubic), as in the CLI
            im = im.convert("RGB")
            im.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (24, 1))))
        im.save(good / f"p{i}{Path(name).suffix}", quality=90) if name.endswith(".jpg") else im.save(good / f"p{i}.png")
    raw = (good / "p0.png").read_bytes()
    (root / "broken.png").write_bytes(raw[: len(raw) // 2])
    return root


def _cli_reference(photos: Path, out: Path, *extra: str) -> dict[str, bytes]:
    code = main(["-i", str(photos / "good"), "-o", str(out), *CLI_MODEL, "-q", *extra])
    assert code == 0
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.fixture(scope="module")
def reference(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What the single-machine CLI writes for good/."""
    return _cli_reference(photos, tmp_path_factory.mktemp("ref"))


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_same_bytes_as_the_cli_bad_image_reported_existing_output_kept(ray_local, photos, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p1.png").write_bytes(b"done by an earlier run")
    (out / ".p2.png.k1ll3d.part").write_bytes(b"left by a worker killed mid-write")
    summary = upscale_many([str(photos / "good"), str(photos / "broken.png")], out, progress=False, batch_size=2, **MODEL)

    assert sorted(Path(s).name for s in summary.done) == sorted(n for n in reference if n != "p1.png")
    assert [Path(s).name for s in summary.skipped] == ["p1.png"]
    assert len(summary.failed) == 1 and summary.failed[0][0].endswith("broken.png")
    reason = summary.failed[0][1]
    assert "broken.png" in reason and "\n" not in reason
    assert summary.images_per_s > 0 and summary.workers == 1
    written = _outputs(out)
    assert written.pop("p1.png") == b"done by an earlier run"  # resume: existing outputs are never redone
    assert written == {n: b for n, b in reference.items() if n != "p1.png"}  # and the stale .part is gone

    again = upscale_many(str(photos / "good"), out, progress=False, **MODEL)  # a second run has nothing to do
    assert again.done == [] and len(again.skipped) == len(reference) and again.failed == []


def test_list_file_of_paths_and_uris(ray_local, photos, reference, tmp_path):
    good = sorted((photos / "good").iterdir())
    folder = tmp_path / "by_uri"  # a folder URI: its images, listed through pyarrow's file system
    folder.mkdir()
    for name in ("p2.png", "p3.png"):
        (folder / name).write_bytes((photos / "good" / name).read_bytes())
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# a comment\n{good[0]}\n\n{good[1].as_uri()}\n{folder.as_uri()}\n"
                       f"{tmp_path / 'gone.png'}\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = upscale_many(str(listing), out, progress=False, **MODEL)

    expected = [good[0].name, good[1].name, "p2.png", "p3.png"]
    assert sorted(Path(s).name for s in summary.done) == expected
    assert summary.failed == [(str(tmp_path / "gone.png"), "no such file or directory")]
    assert _outputs(out) == {n: reference[n] for n in expected}
    with pytest.raises(UsageError, match="URI inputs need -o"):
        upscale_many([good[0].as_uri()], None, progress=False, **MODEL)
    with pytest.raises(ValueError, match="at least 64M"):
        upscale_many([str(good[0])], out, max_memory="1k", progress=False, **MODEL)
    with pytest.raises(UsageError, match="alpha 'none'"):
        upscale_many([str(good[0])], out, alpha="none", progress=False, **MODEL)


def test_every_option_reaches_the_actors(ray_local, photos, reference, tmp_path, monkeypatch):
    """The options travel whole: the record the actors get equals the caller's in every field (only
    the model path made absolute and the threads sized), and the settings the Ray path once dropped
    (--png-level, --value-range, --fp16-arith) give the CLI's bytes."""
    import realesr_portable.distributed.run as run

    shipped = []
    real_run = run._run
    monkeypatch.setattr(run, "_run", lambda ray, rows, options, *rest: (shipped.append(options), real_run(ray, rows, options, *rest))[1])
    extra = {"png_level": 9, "value_range": (0.0, 1.5), "fp16_arith": True, "quality": 80, "background": (0, 0, 255),
             "max_pixels": 10_000, "tile": 16}
    given = UpscaleOptions(**MODEL, **extra)
    summary = upscale_many(str(photos / "good"), tmp_path / "ray", options=given, progress=False)
    assert summary.failed == [] and len(summary.done) == len(reference)
    assert len(shipped) == 1
    assert replace(shipped[0], threads=given.threads) == given  # a model name stays a name; nothing dropped
    cli = _cli_reference(photos, tmp_path / "cli", "--png-level", "9", "--value-range", "0,1.5", "--fp16-arith",
                         "--quality", "80", "--background", "0,0,255", "--max-pixels", "10000", "-t", "16")
    assert _outputs(tmp_path / "ray") == cli
    assert cli["p0.png"] != reference["p0.png"]  # the options changed the output, so the comparison means something


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def _actor_pids() -> list[int]:
    """Processes of this test's Ray Data actors (title `ray::MapWorker(...)`, children of our Ray)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if title.startswith(b"ray::MapWorker") and _descends_from(int(entry.name), os.getpid()):
            pids.append(int(entry.name))
    return pids


def test_sigkilled_actor_is_restarted_and_every_output_written_once(ray_local, photos, tmp_path):
    # TTA (8 passes per image) makes the job last long enough for the kill to land mid-job.
    reference = _cli_reference(photos, tmp_path / "ref", "-x")
    out = tmp_path / "out"
    killed: dict[str, object] = {}

    def kill_when_the_first_output_appears() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            names = {p.name for p in out.glob("*")} if out.is_dir() else set()
            pids = _actor_pids()
            if names & set(reference) and pids:
                killed["written"] = len(names & set(reference))
                killed["pid"] = pids[0]
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_the_first_output_appears, daemon=True)
    killer.start()
    summary = upscale_many(str(photos / "good"), out, tta=True, batch_size=1, actors=1, progress=False, **MODEL)
    killer.join(timeout=10)

    assert "pid" in killed, "the actor was never seen"
    assert killed["written"] < len(reference), "the kill landed after the job had finished"
    assert summary.failed == [] and len(summary.done) == len(reference)
    assert _outputs(out) == reference  # every output once, complete, no leftover temporary file


def test_cli_ray_auto_in_process_and_address_in_a_subprocess(ray_local, photos, reference, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["-i", str(photos / "good"), "-i", str(photos / "broken.png"), "-o", str(out), *CLI_MODEL, "--ray", "auto",
                 "--max-memory", "1G"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{len(reference)} done, 0 skipped, 1 failed" in err and "broken.png" in err and "Traceback" not in err
    assert _outputs(out) == reference

    address = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    joined = tmp_path / "joined"
    script = "import sys; from realesr_portable.cli import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", script, "-i", str(photos / "good"), "-o", str(joined),
                          *CLI_MODEL, "--ray", address, "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == ""  # -q and no failure: not a line, Ray's progress and logs included
    assert _outputs(joined) == reference


def test_without_ray_the_flag_names_the_extra(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when the extra is not installed
    code = main(["-i", str(photos / "good"), "-o", str(tmp_path / "out"), *CLI_MODEL, "--ray", "auto"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "realesr-portable[distributed]" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_actor_sizing_leaves_cpu_for_ray_data_and_gives_each_actor_a_gpu():
    one = size_actors({"CPU": 2.0}, nodes=1, actors=None, num_cpus=None, num_gpus=0.0, threads=None)
    assert (one.actors, one.threads) == (1, 2) and one.num_cpus < 2.0
    two = size_actors({"CPU": 2.0}, nodes=1, actors=2, num_cpus=None, num_gpus=0.0, threads=None)
    assert (two.actors, two.threads) == (2, 1) and 2 * two.num_cpus < 2.0
    gpus = size_actors({"CPU": 64.0, "GPU": 8.0}, nodes=2, actors=None, num_cpus=None, num_gpus=1.0, threads=None)
    assert (gpus.actors, gpus.num_gpus) == (8, 1.0)
    auto = size_actors({"CPU": 16.0, "GPU": 4.0}, nodes=1, actors=None, num_cpus=None, num_gpus=None, threads=None)
    assert (auto.actors, auto.num_gpus) == (4, 1.0)
    forced_cpu = size_actors({"CPU": 16.0, "GPU": 4.0}, nodes=1, actors=None, num_cpus=None, num_gpus=None, threads=None,
                             cpu_only=True)
    assert (forced_cpu.actors, forced_cpu.num_gpus, forced_cpu.threads) == (1, 0.0, 16)
    with pytest.raises(ValueError, match="has 0 GPU"):
        size_actors({"CPU": 2.0}, nodes=1, actors=None, num_cpus=None, num_gpus=1.0, threads=None)
    # asking for more CPUs than the cluster has once waited forever without a word
    with pytest.raises(ValueError, match=r"has 2 CPU\(s\); 1 actor\(s\) asking for 100 each need 100"):
        size_actors({"CPU": 2.0}, nodes=1, actors=None, num_cpus=100.0, num_gpus=0.0, threads=None)
    with pytest.raises(ValueError, match=r"has 2 CPU\(s\); 3 actor\(s\) asking for 1 each need 3"):
        size_actors({"CPU": 2.0}, nodes=1, actors=3, num_cpus=1.0, num_gpus=0.0, threads=None)
    with pytest.raises(ValueError, match="has 16 CPU"):
        size_actors({"CPU": 16.0, "GPU": 4.0}, nodes=1, actors=None, num_cpus=32.0, num_gpus=1.0, threads=None)
    assert assigned_vulkan_device(["3"], [0, 1, 2, 3]) == 3  # Vulkan sees every GPU
    assert assigned_vulkan_device(["3"], [5]) == 5  # the driver filtered the list down to ours
    assert assigned_vulkan_device([], [0]) is None


def test_model_paths_reach_workers_as_absolute_paths_names_stay_names(tmp_path, monkeypatch):
    from realesr_portable.distributed.run import _for_workers

    monkeypatch.chdir(tmp_path)
    Path("mine.param").write_text("7767517\n")
    assert _for_workers("mine.param") == str(tmp_path / "mine.param")  # a worker's cwd is not ours
    assert _for_workers("realesr-animevideov3") == "realesr-animevideov3"


def test_an_address_where_nothing_listens_fails_in_one_line_not_a_hang(tmp_path):
    """`--ray 127.0.0.1:1` waited past 200 s with no error (Ray retries its GCS for minutes).
    In its own process: this module's Ray is already initialised, and an initialised Ray is used."""
    import socket

    from PIL import Image

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "realesr_portable", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"),
                           "--ray", f"127.0.0.1:{port}", "-q", "-n", "realesr-animevideov3-x2"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 2 and time.monotonic() - started < 60, proc.stderr
    assert proc.stderr.strip() == (f"realesr-portable: error: cannot reach the Ray cluster at '127.0.0.1:{port}' "
                                   "(Connection refused); is it running?")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_leftovers_of_a_live_writer_are_kept_dead_ones_removed(tmp_path):
    """The Ray driver deleted `.a.png.PID.xxxxxxxx.part` files that a running process still wrote."""
    import subprocess

    from realesr_portable.distributed.plan import Row, remove_leftovers

    live = subprocess.Popen(["sleep", "60"])
    try:
        kept = tmp_path / f".a.png.{live.pid}.abcd1234.part"
        dead = tmp_path / ".a.png.999999999.abcd1234.part"
        unnamed = tmp_path / ".a.png.k1ll3d.part"
        for part in (kept, dead, unnamed):
            part.write_bytes(b"half")
        assert remove_leftovers([Row(src="a.png", dst=str(tmp_path / "a.png"), fmt="PNG")]) == 2
        assert kept.exists() and not dead.exists() and not unnamed.exists()
    finally:
        live.kill()
        live.wait()
