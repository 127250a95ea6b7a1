"""Worker heartbeats: each ingestion worker writes its row every few seconds."""

from __future__ import annotations

import os
import socket
import time

import psutil
from sqlalchemy import select

from llamafarm.state.db import StateDB
from llamafarm.state.tables import WorkerHeartbeat

STALE_SECONDS = 30.0


def beat(db: StateDB, worker: str) -> None:
    with db.session() as session:
        session.merge(WorkerHeartbeat(worker=worker, pid=os.getpid(), last_seen=time.time()))


def live_workers(db: StateDB) -> list[WorkerHeartbeat]:
    """Workers with a recent heartbeat, less those of this host whose process is gone."""
    host = socket.gethostname()
    with db.session() as session:
        cutoff = time.time() - STALE_SECONDS
        recent = session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.last_seen >= cutoff))
        return [w for w in recent if w.worker.rsplit(":", 1)[0] != host or psutil.pid_exists(w.pid)]
