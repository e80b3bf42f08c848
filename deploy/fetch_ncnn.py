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
import html
import json
import os
import re
import sys
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def sdist_url(version: str) -> tuple[str, str]:
    """The sdist's URL and sha256 as the index lists them (JSON page, or the HTML one of PEP 503)."""
    page = f"{INDEX}/ncnn/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    with urllib.request.urlopen(urllib.request.Request(page, headers={"Accept": accept}), timeout=60) as resp:
        body = resp.read().decode("utf-8")
        is_json = "json" in resp.headers.get("Content-Type", "")
    name = f"ncnn-{version}.tar.gz"
    if is_json:
        links = [(e["url"], e["filename"], e["hashes"].get("sha256", "")) for e in json.loads(body)["files"]]
    else:
        links = []
        for href in re.findall(r'href="([^"]+)"', body):
            url, _, fragment = html.unescape(href).partition("#")
            links.append((url, url.rsplit("/", 1)[-1], fragment.removeprefix("sha256=")))
    for url, filename, sha256 in links:
        if filename == name:
            return urllib.parse.urljoin(page, url), sha256
    raise SystemExit(f"error: {name} is not on {page}")


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
