"""This host and its processes, as files that processes share name them (per-process results
folders in a shared build folder, partial files of interrupted writes), shared by every layer."""

from __future__ import annotations

import os
import re
import socket

__all__ = ["file_name_part", "process_has_ended", "this_host"]


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
