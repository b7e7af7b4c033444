"""One writer at a time: an exclusive, non-blocking `fcntl.flock` on a lock file beside the database.

The kernel drops the lock when the holder dies (even by SIGKILL), so a crash never leaves a stale lock.

>>> import tempfile, os
>>> lock = WriterLock(os.path.join(tempfile.mkdtemp(), "record.lock")); lock.acquire(); lock.release()
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from memory.errors import WriterLockedError


class WriterLock:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise WriterLockedError(
                f"{self.path.parent} is open for writing by another process (pid {holder}); "
                "open it read-only, or wait until that writer closes"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
