"""Claims on runs, so that several ``nvmsim run`` processes (or machines on a shared store)
split a study instead of each computing all of it.

A process claims a run just before computing it; a heartbeat thread renews its claims every
quarter of the lease. A process that is killed stops renewing, its claims expire after
``ttl`` seconds, and any other process takes those runs over.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from pathlib import Path

from nvmsim.studies.store import Store, StoreError

DEFAULT_TTL = 60.0


def lease_seconds() -> float:
    """The lease length: ``$NVMSIM_LEASE_SECONDS`` or 60 s."""
    raw = os.environ.get("NVMSIM_LEASE_SECONDS")
    if raw is None:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = float("nan")
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"NVMSIM_LEASE_SECONDS = {raw!r}: must be a positive number of seconds")
    return ttl


class Lease:
    """This process's identity in a store's claims, kept alive while the context is open."""

    def __init__(self, store_path: str | Path, ttl: float | None = None) -> None:
        self.store_path = Path(store_path)
        self.ttl = lease_seconds() if ttl is None else ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="nvmsim-lease", daemon=True)

    def _beat(self) -> None:
        with Store(self.store_path) as store:  # its own connection: sqlite3 is per thread
            while not self._stop.wait(self.ttl / 4):
                store.renew(self.owner, self.ttl)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            with Store(self.store_path) as store:
                store.release(self.owner)
        except (StoreError, sqlite3.Error):
            pass  # unreleased claims expire after ttl; never hide the error that brought us here
