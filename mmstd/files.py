"""Filesystem rules every stage shares: contained reads, atomic writes, content digests.

Untrusted trees (packages, submissions) are read only through ``inventory`` and ``open_in_root``,
which refuse absolute paths, ``..``, symlinks, hard links and special files before any library
sees a byte. Every write goes through a temporary file in the destination directory, is fsynced,
and is renamed into place, so a crash never leaves a half-written artifact.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mmstd.errors import MmstdError

CHUNK = 1 << 20
MAX_FILE_BYTES = 4 << 30   # 4 GiB: above the 2 GB protobuf limit, so large graphs use external data
MAX_FILES = 10_000
MAX_DEPTH = 16
MAX_PATH_CHARS = 1024


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One regular file found inside a root: its root-relative POSIX path and size."""

    rel: str
    size: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_relpath(rel: str, *, where: str) -> PurePosixPath:
    """Refuse absolute paths, ``..``, ``.`` components, backslashes and NUL lexically.

    Raises:
        MmstdError: ``E_FS_PATH_ESCAPE`` naming ``where`` and the path.
    """
    p = PurePosixPath(rel)
    bad = (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("..", ".", "") for part in rel.split("/"))
    )
    if bad or p.is_absolute():
        raise MmstdError(
            f"{where}: path {rel!r} escapes the root or is not normalized.",
            code="E_FS_PATH_ESCAPE",
            hint="paths must be relative, use '/', and contain no '..' or '.' parts.",
        )
    if len(rel) > MAX_PATH_CHARS:
        raise MmstdError(f"{where}: path is {len(rel)} characters (limit {MAX_PATH_CHARS}).", code="E_FS_LIMIT")
    return p


def inventory(
    root: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_files: int = MAX_FILES,
    max_depth: int = MAX_DEPTH,
) -> list[FileEntry]:
    """Walk ``root`` with lstat and list its regular files, sorted.

    Nothing is opened. Symlinks, hard links, FIFOs, sockets and devices are refused, and so are
    trees over the caps.

    Raises:
        MmstdError: ``E_FS_PATH_ESCAPE``, ``E_FS_NOT_REGULAR`` or ``E_FS_LIMIT`` naming the path.
    """
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode):
        raise MmstdError(f"{root}: is a symlink; a package must be a real directory.", code="E_FS_PATH_ESCAPE")
    if not stat.S_ISDIR(st.st_mode):
        raise MmstdError(f"{root}: is not a directory.", code="E_FS_NOT_REGULAR")
    found: list[FileEntry] = []
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise MmstdError(f"{root.name}: a file name is not valid UTF-8: {rel!r}.", code="E_FS_LIMIT") from None
            est = entry.stat(follow_symlinks=False)
            mode = est.st_mode
            if stat.S_ISLNK(mode):
                raise MmstdError(
                    f"{root.name}/{rel}: is a symlink (to {os.readlink(entry.path)!r}); links are not allowed.",
                    code="E_FS_PATH_ESCAPE",
                )
            if stat.S_ISDIR(mode):
                if depth + 1 >= max_depth:
                    raise MmstdError(f"{root.name}/{rel}: nested deeper than {max_depth} levels.", code="E_FS_LIMIT")
                stack.append((Path(entry.path), rel + "/", depth + 1))
                continue
            if not stat.S_ISREG(mode):
                raise MmstdError(
                    f"{root.name}/{rel}: is a {_kind(mode)}, not a regular file.", code="E_FS_NOT_REGULAR"
                )
            if est.st_nlink > 1:
                raise MmstdError(
                    f"{root.name}/{rel}: has {est.st_nlink} hard links; a package file must have exactly 1.",
                    code="E_FS_PATH_ESCAPE",
                )
            if est.st_size > max_file_bytes:
                raise MmstdError(
                    f"{root.name}/{rel}: is {est.st_size} bytes (limit {max_file_bytes}).", code="E_FS_LIMIT"
                )
            found.append(FileEntry(rel, est.st_size))
            if len(found) > max_files:
                raise MmstdError(f"{root.name}: holds more than {max_files} files.", code="E_FS_LIMIT")
    return sorted(found, key=lambda f: f.rel)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


@contextmanager
def open_in_root(root: Path, rel: str, *, max_bytes: int = MAX_FILE_BYTES) -> Iterator[BinaryIO]:
    """Open ``root/rel`` for reading without following any link, race-free.

    Each directory component is opened with ``O_NOFOLLOW`` relative to its parent; the leaf is
    opened ``O_NOFOLLOW|O_NONBLOCK`` (a FIFO cannot block us) and must be a regular file with one
    link and at most ``max_bytes``.

    Raises:
        MmstdError: ``E_FS_PATH_ESCAPE``, ``E_FS_NOT_REGULAR`` or ``E_FS_LIMIT``.
    """
    parts = check_relpath(rel, where=root.name).parts
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fd = os.open(root, flags_dir)
        fds.append(fd)
        for part in parts[:-1]:
            fd = _open_component(part, fds[-1], flags_dir, root, rel)
            fds.append(fd)
        leaf = _open_component(parts[-1], fds[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, root, rel)
    finally:
        for d in fds:
            os.close(d)
    st = os.fstat(leaf)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = MmstdError(f"{root.name}/{rel}: is a {_kind(st.st_mode)}, not a regular file.", code="E_FS_NOT_REGULAR")
    elif st.st_nlink > 1:
        problem = MmstdError(f"{root.name}/{rel}: has {st.st_nlink} hard links (expected 1).", code="E_FS_PATH_ESCAPE")
    elif st.st_size > max_bytes:
        problem = MmstdError(f"{root.name}/{rel}: is {st.st_size} bytes (limit {max_bytes}).", code="E_FS_LIMIT")
    if problem:
        os.close(leaf)
        raise problem
    os.set_blocking(leaf, True)
    with os.fdopen(leaf, "rb") as f:
        yield f


def _open_component(part: str, dir_fd: int, flags: int, root: Path, rel: str) -> int:
    try:
        return os.open(part, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP or _is_link(dir_fd, part):
            raise MmstdError(f"{root.name}/{rel}: goes through a symlink ({part!r}).", code="E_FS_PATH_ESCAPE") from None
        if e.errno == errno.ENOENT:
            raise MmstdError(f"{root.name}/{rel}: does not exist.", code="E_FS_NOT_REGULAR") from None
        if e.errno == errno.ENOTDIR:
            raise MmstdError(f"{root.name}/{rel}: {part!r} is not a directory.", code="E_FS_NOT_REGULAR") from None
        raise


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def hash_in_root(root: Path, rel: str, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[str, int]:
    """sha256 and byte count of ``root/rel``, read through ``open_in_root``."""
    h = hashlib.sha256()
    n = 0
    with open_in_root(root, rel, max_bytes=max_bytes) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` via a same-directory temp file, fsync, then link or replace.

    Without ``overwrite`` the final step is ``os.link``, which fails if ``path`` exists, so an
    existing file is never clobbered, even by a racing writer.

    Raises:
        MmstdError: ``E_OUTPUT_EXISTS`` when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise MmstdError(
                    f"{path}: already exists; refusing to overwrite it.", code="E_OUTPUT_EXISTS",
                    hint="choose another path, or pass --force to replace it.",
                ) from None
            os.unlink(tmp)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Path, text: str, *, overwrite: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
