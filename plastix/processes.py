"""This host and its processes, as files that processes share name them (per-process results
folders in a shared build folder, partial files of interrupted writes, lock files), shared by
every layer."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = [
    "LockFileDenied",
    "LockHeld",
    "LockHolder",
    "file_name_part",
    "hold_lock_file",
    "lock_holder",
    "process_has_ended",
    "this_host",
]


def file_name_part(text: str) -> str:
    """``text`` with every run of characters a file name should not hold replaced by '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def this_host() -> str:
    """The host name as a file-name part (:func:`file_name_part`)."""
    return file_name_part(socket.gethostname()) or "host"


def process_has_ended(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (``kill(pid, 0)`` finds none). A process
    of another user counts as running; so does every process on Windows, where signal 0 would
    stop the process instead of probing it."""
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, as another user
        return False
    return False


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock file of :func:`hold_lock_file`: host, process id and when it took the
    lock (None where the holder has not written them yet)."""

    host: str | None = None
    pid: int | None = None
    since: str | None = None

    @property
    def is_this_process(self) -> bool:
        return self.host == this_host() and self.pid == os.getpid()

    def __str__(self) -> str:
        if self.pid is None:
            return "another process (it has not written its name yet)"
        return f"process {self.pid} on {self.host}, since {self.since}"


class LockHeld(RuntimeError):
    """The lock file ``path`` is held by ``holder`` (another process, or another open of this
    one)."""

    def __init__(self, path: Path, holder: LockHolder) -> None:
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


class LockFileDenied(RuntimeError):
    """The lock file ``path`` cannot be opened by this process (``reason``: permission denied,
    as for another user's lock file in a shared folder), so whether a run holds it is unknown.
    """

    def __init__(self, path: Path, reason: OSError) -> None:
        super().__init__(
            f"the lock file {path} cannot be opened ({reason.strerror or reason}): it belongs to "
            "another user, or its folder is not writable; if no run is writing there, its owner "
            "can delete it, else choose another folder"
        )
        self.path = path


#: flock errors of a file system that has no locks (some network and FUSE mounts).
_NO_LOCKS_HERE = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
_CONTENDED = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}


@contextlib.contextmanager
def hold_lock_file(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock file ``path`` (``fcntl.flock``, never waiting) for the block.

    Raises :class:`LockHeld` naming the holder when another process (or another open in this
    one) holds it. The file records this host, process id and time; it is deleted on release,
    while still locked, and a lock taken on a file deleted meanwhile is given up and taken
    again on the file now at ``path``, so two processes never both hold it. A holder that dies
    (even by SIGKILL) releases the lock with its process; its file is taken over. Where the
    file system has no locks, or the platform no ``fcntl``, the block runs unlocked. A file this
    process may not open (another user's) raises :class:`LockHeld` while its holder runs, else
    :class:`LockFileDenied`: it is never deleted, since its owner might be taking it.
    """
    path = Path(path)
    fd = _take_lock(path) if fcntl is not None else None
    if fd is None:
        yield
        return
    try:
        since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": this_host(), "pid": os.getpid(), "since": since}).encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _take_lock(path: Path) -> int | None:
    """An open descriptor of the file at ``path`` holding its exclusive flock, or None where
    the file system has no locks (the file is removed again); :class:`LockHeld` if held,
    :class:`LockFileDenied` where this process may not open it and sees no holder."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as exc:
            holder = lock_holder(path)
            if holder is not None:
                raise LockHeld(path, holder) from None
            raise LockFileDenied(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _CONTENDED:
                raise LockHeld(path, lock_holder(path) or LockHolder()) from None
            if exc.errno in _NO_LOCKS_HERE:
                path.unlink(missing_ok=True)
                return None
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        os.close(fd)  # its holder deleted the file between our open and our lock: again


def lock_holder(path: str | os.PathLike[str]) -> LockHolder | None:
    """Who holds the lock file ``path`` of :func:`hold_lock_file`, or None when nobody does (no
    file, or one whose holder has ended); :class:`LockFileDenied` where this process may not
    read it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise LockFileDenied(Path(path), exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _CONTENDED:
                return None  # no locks on this file system: nobody can hold one
        else:
            return None
        try:
            fields = json.loads(os.read(fd, 4096) or b"{}")
            return LockHolder(str(fields["host"]), int(fields["pid"]), str(fields["since"]))
        except (ValueError, KeyError, TypeError):
            return LockHolder()
    finally:
        os.close(fd)
