"""deploy/build.sh on a machine that lacks something: one line naming the Debian packages, a
fallback to ncnn's bundled glslang, the shared cache reused and never changed in place (issue 21
item 6). `--dry-run` stops before compiling, so none of this costs a build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploy_support import BUILD_SCRIPT, build_runner

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "realesr-portable"


def _path_without(tmp_path: Path, *programs: str) -> str:
    """A PATH with every program of the usual folders except `programs` (links in tmp_path)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for where in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(where).iterdir() if Path(where).is_dir() else []:
            link = folder / entry.name
            if entry.name not in programs and not link.exists():
                link.symlink_to(entry)
    return str(folder)


def _build(args: list[str], path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PATH": path} if path else {})}
    return subprocess.run(["bash", str(BUILD_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def cached() -> Path:
    build_runner("x86_64")  # the cache exists after this (CI builds it before the tests anyway)
    proc = _build(["--dry-run"])
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.split()[1])


@pytest.mark.parametrize(("drop", "packages"), [
    (("cmake",), "cmake"),
    (("cmake", "make"), "cmake make"),
    (("aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc"), "g++-aarch64-linux-gnu"),
])
def test_missing_prerequisites_are_one_line(tmp_path: Path, drop: tuple[str, ...], packages: str) -> None:
    proc = _build(["--arch", "aarch64", "--dry-run"], _path_without(tmp_path, *drop))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: deploy/build.sh needs these Debian packages: {packages} (apt-get install"), lines


def test_the_cached_ncnn_is_reused_and_the_shared_source_is_not_touched(cached: Path) -> None:
    source = CACHE / "src"
    before = sorted((p.relative_to(source), p.stat().st_mtime_ns) for p in source.glob("*/*"))
    proc = _build([])
    assert proc.returncode == 0, proc.stderr
    assert "building ncnn" not in proc.stderr  # the cached build was used
    assert cached.name.startswith("ncnn-") and (cached / ".complete").is_file()
    assert sorted((p.relative_to(source), p.stat().st_mtime_ns) for p in source.glob("*/*")) == before


def test_without_debian_glslang_the_bundled_one_is_chosen(tmp_path: Path, cached: Path) -> None:
    proc = _build(["--dry-run"], _path_without(tmp_path, "glslangValidator"))
    assert proc.returncode == 0, proc.stderr
    assert "system glslang OFF" in proc.stdout
    assert Path(proc.stdout.split()[1]) != cached  # another configuration, another cache entry


def test_ci_installs_every_package_build_sh_checks() -> None:
    import re

    script = BUILD_SCRIPT.read_text()
    checked = set(re.findall(r"^\s*need_(?:program|header) \S+ (\S+)", script, flags=re.M))
    assert {"cmake", "g++", "libstb-dev", "nlohmann-json3-dev", "g++-aarch64-linux-gnu"} <= checked, checked
    ci = (BUILD_SCRIPT.parents[1] / ".ci" / "run").read_text()
    installed = set(" ".join(re.findall(r"apt-get install -y -qq ((?:.|\\\n)*?)>/dev/null", ci)).replace("\\", " ").split())
    assert checked | {"glslang-dev", "glslang-tools"} <= installed, checked - installed


def test_every_kept_layer_is_built_and_the_documented_refusals_match() -> None:
    """Each name of build.sh's `keep` list is compiled in wherever it stands in the list (names
    ending a line were once dropped: Crop, Reshape, Dequantize), and docs/deploy.md names exactly
    the validator's layer types the C++ runner's ncnn leaves out. `--list-layers` computes the
    configuration the build uses and stops, so this costs no build."""
    import re

    from realesr_portable.graph.layers import LAYER_KINDS

    proc = _build(["--list-layers"])
    assert proc.returncode == 0, proc.stderr
    built = {name.lower() for name in proc.stdout.split()}
    listed = subprocess.run(["bash", "-c", 'eval "$(sed -n "/^keep=(/,/^)/p" "$1")"; printf "%s\\n" "${keep[@]}"',
                             "-", str(BUILD_SCRIPT)], capture_output=True, text=True, check=True).stdout.split()
    assert len(listed) > 30 and {"crop", "reshape", "dequantize", "requantize", "input"} <= set(listed)
    assert set(listed) <= built, set(listed) - built
    left_out = {kind for kind in LAYER_KINDS if kind.lower() not in built}
    docs = (BUILD_SCRIPT.parent.parent / "docs" / "deploy.md").read_text()
    sentence = re.search(r"its ncnn leaves out ([^(]+)\(", docs)
    assert sentence is not None
    documented = set(re.findall(r"[A-Za-z]+", sentence.group(1).replace(" and ", ", "))) - {"and"}
    assert documented == left_out, (documented, left_out)
