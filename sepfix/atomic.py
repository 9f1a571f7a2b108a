"""Write files so that a crash, a kill or a full disk never leaves a partial file behind.

The bytes go to a temporary file in the destination's own folder (same file system, so the
rename is atomic), are fsynced, then renamed over the destination; the folder is fsynced so the
rename itself survives a power cut. On any failure the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from sepfix.errors import SepfixError


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `destination`; on success it replaces `destination`."""
    destination = Path(destination)
    folder = destination.parent if str(destination.parent) else Path(".")
    if not folder.is_dir():
        raise SepfixError(f"cannot write {destination}: folder {folder} does not exist")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=suffix + ".tmp", dir=folder)
    except OSError as error:
        raise SepfixError(f"cannot write {destination}: {error.strerror or error}") from None
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, _mode_for(destination))
        _fsync_file(temporary)
        os.replace(temporary, destination)
        _fsync_folder(folder)
    except OSError as error:
        raise SepfixError(f"cannot write {destination}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes_atomic(destination: str | os.PathLike, data: bytes) -> None:
    with atomic_path(destination) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(destination: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(destination, text.encode("utf-8"))


def write_with(destination: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary path, then move it into place atomically."""
    with atomic_path(destination) as temporary:
        writer(temporary)


def _mode_for(destination: Path) -> int:
    """The replaced file's permissions, or what a plain open() would give (mkstemp makes 0600)."""
    try:
        return destination.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
