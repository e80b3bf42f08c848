#!/usr/bin/env python3
"""Fetch ncnn's C++ source (the PyPI sdist) through the package index and check its hash.

`pip download ncnn==V --no-binary :all:` refuses this sdist: its build stamps today's date as the
version, so pip discards it as inconsistent. The archive itself is the right source, so this asks
the index pip uses (PEP 691 JSON simple API, the same page `pip download -v` lists) for the file,
checks the index's sha256 against the one pinned in build.sh, and unpacks it.

Usage: fetch_ncnn.py VERSION SHA256 DEST_DIR   (prints the unpacked source folder)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def sdist_url(version: str) -> tuple[str, str]:
    """The sdist's URL and sha256 as the index lists them."""
    req = urllib.request.Request(f"{INDEX}/ncnn/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    name = f"ncnn-{version}.tar.gz"
    for entry in files:
        if entry["filename"] == name:
            return entry["url"], entry["hashes"]["sha256"]
    raise SystemExit(f"error: {name} is not on {INDEX}/ncnn/")


def fetch(version: str, pinned: str, dest: Path) -> Path:
    """Download (once) and unpack; refuse a file whose hash is not the pinned one."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"ncnn-{version}.tar.gz"
    if not archive.exists() or hashlib.sha256(archive.read_bytes()).hexdigest() != pinned:
        url, listed = sdist_url(version)
        if listed != pinned:
            raise SystemExit(f"error: index lists sha256 {listed} for {url}, build.sh pins {pinned}")
        part = archive.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=300) as resp, open(part, "wb") as out:
            out.write(resp.read())
        got = hashlib.sha256(part.read_bytes()).hexdigest()
        if got != pinned:
            part.unlink()
            raise SystemExit(f"error: downloaded {url} has sha256 {got}, expected {pinned}")
        part.replace(archive)
    source = dest / f"ncnn-{version}"
    if not (source / "CMakeLists.txt").exists():
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(dest, filter="data")
            except TypeError:  # Python < 3.11.4 has no extraction filters
                tar.extractall(dest)
    return source


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(fetch(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
