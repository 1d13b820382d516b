"""Where the corpus comes from: the pinned npm tarball, or a local tarball/directory.

The manifest ``poemrag/data/sources.toml`` (shipped inside the package) pins the package version and its integrity hash and
names the files of the Tang collection. Files are read straight from the tarball.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from poemrag.errors import CorpusError

DEFAULT_MANIFEST: Traversable = files("poemrag") / "data" / "sources.toml"
"""The pinned manifest, read as a package resource (an installed wheel carries it)."""


@dataclass(frozen=True)
class CorpusManifest:
    """The pinned corpus package and the files that make up the Tang collection."""

    package: str
    version: str
    license: str
    integrity: str
    tarball: str
    root: str
    poems: str
    authors: str
    tags: str
    expected_poems: int
    expected_paragraphs: int

    @classmethod
    def load(cls, path: Path | Traversable | None = None) -> CorpusManifest:
        """The manifest at ``path``, by default the one shipped with the package."""
        path = path or DEFAULT_MANIFEST
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))["corpus"]
            return cls(**data)
        except FileNotFoundError:
            raise CorpusError(f"corpus manifest not found: {path}") from None
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise CorpusError(f"corpus manifest {path} is invalid: {exc}") from None

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


def integrity_of(path: Path) -> str:
    """The npm-style ``sha512-<base64>`` integrity string of a file."""
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify_tarball(path: Path, manifest: CorpusManifest) -> None:
    """Raise :class:`CorpusError` unless ``path`` has the manifest's integrity hash."""
    actual = integrity_of(path)
    if actual != manifest.integrity:
        raise CorpusError(
            f"{path} does not match the pinned {manifest.spec} integrity hash "
            f"(got {actual[:23]}…); delete it to download it again"
        )


def fetch_tarball(dest_dir: Path, manifest: CorpusManifest) -> Path:
    """Return the verified pinned tarball in ``dest_dir``, fetching it with ``npm pack`` once."""
    target = dest_dir / manifest.tarball
    if target.exists():
        verify_tarball(target, manifest)
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(
            f"npm is not installed, so {manifest.spec} cannot be fetched; install Node.js/npm "
            "or pass --source PATH (a chinese-poetry tarball or unpacked package directory)"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_fetches(dest_dir)
    # Download into a private temp dir, then rename: an interrupted fetch leaves no partial file.
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=f".fetch-{os.getpid()}-") as tmp:
        proc = subprocess.run(
            [npm, "pack", manifest.spec, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            check=False,
            text=True,
        )
        fetched = Path(tmp) / manifest.tarball
        if proc.returncode != 0 or not fetched.exists():
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise CorpusError(
                f"npm pack {manifest.spec} failed: {detail[-1] if detail else 'no output'}"
            )
        verify_tarball(fetched, manifest)
        fetched.replace(target)
    return target


def _remove_abandoned_fetches(dest_dir: Path) -> None:
    """Delete the temp dirs of fetches whose process died (a killed ingest leaves its half
    download, up to the whole tarball, in ``.fetch-<pid>-*``)."""
    for tmp in dest_dir.glob(".fetch-*-*"):
        pid = tmp.name.split("-")[1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _offset_key(name: str) -> tuple[int, str]:
    match = re.search(r"\.(\d+)\.json$", name)
    return (int(match.group(1)) if match else -1, name)


class CorpusSource:
    """Reads the Tang collection's JSON files from a tarball or a directory."""

    def __init__(self, path: Path, manifest: CorpusManifest) -> None:
        self.path = path
        self.manifest = manifest
        if not path.exists():
            raise CorpusError(f"corpus source not found: {path}")
        if path.is_dir():
            self._root = self._find_root(path)
        elif not tarfile.is_tarfile(path):
            raise CorpusError(f"corpus source is neither a directory nor a tarball: {path}")

    def _find_root(self, path: Path) -> Path:
        root = self.manifest.root
        for candidate in (path / "package" / root, path / root, path):
            if any(candidate.glob(self.manifest.poems)):
                return candidate
        raise CorpusError(
            f"no {self.manifest.poems} files under {path} "
            f"(expected {root}/ of {self.manifest.package})"
        )

    def _wanted(self, relative: str) -> bool:
        m = self.manifest
        return relative in (m.authors, m.tags) or fnmatch.fnmatch(relative, m.poems)

    def _members(self) -> Iterator[tuple[str, bytes]]:
        if self.path.is_dir():
            for file in sorted(self._root.iterdir()):
                if file.is_file() and self._wanted(file.name):
                    yield file.name, file.read_bytes()
            return
        prefix = f"package/{self.manifest.root}/"
        try:
            with tarfile.open(self.path, mode="r:*") as tar:
                for member in tar:
                    if not member.isfile() or not member.name.startswith(prefix):
                        continue
                    relative = member.name[len(prefix) :]
                    if "/" in relative or not self._wanted(relative):
                        continue
                    handle = tar.extractfile(member)
                    assert handle is not None
                    yield relative, handle.read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise CorpusError(
                f"cannot read tarball {self.path}: {exc or type(exc).__name__}"
            ) from None

    def read(self) -> CorpusFiles:
        """Read and parse all files of the collection (poem files in numeric offset order)."""
        poems: dict[str, list[dict[str, Any]]] = {}
        authors: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        for name, raw in self._members():
            data = _parse_json(name, raw, self.path)
            if name == self.manifest.authors:
                authors = data
            elif name == self.manifest.tags:
                tags = data
            else:
                poems[name] = data
        if not poems:
            raise CorpusError(f"no {self.manifest.poems} files found in {self.path}")
        ordered = [poems[name] for name in sorted(poems, key=_offset_key)]
        return CorpusFiles(poem_files=ordered, authors=authors, tags=tags)


@dataclass
class CorpusFiles:
    """Parsed JSON content of the collection."""

    poem_files: list[list[dict[str, Any]]]
    authors: list[dict[str, Any]]
    tags: list[dict[str, Any]]


def _parse_json(name: str, raw: bytes, source: Path) -> Any:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"corrupt JSON in {source} :: {name}: {exc}") from None
    if not isinstance(data, list):
        raise CorpusError(f"corrupt JSON in {source} :: {name}: expected a list of records")
    return data
