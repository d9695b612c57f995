"""The daemon's Publisher in the test's own process, over a file:// store: for orderings of its
tasks and failures of its spool that no daemon run can be made to produce on demand."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from protocol import IndexMessage
from uploader.config import UploaderConfig
from uploader.files import AllowedDirs
from uploader.metrics import DaemonMetrics
from uploader.payloads import PayloadStore
from uploader.publisher import Publisher
from uploader.spool import Spool, SpoolThread
from uploader.stores import FileStore

# How long ``settle`` waits for the queue to empty, in steps of 0.1 s.
SETTLE_STEPS = 300


class LocalPublisher:
    """A Publisher with its spool, payloads and metrics under ``tmp_path``, publishing to the
    file:// store ``store`` (rooted at ``tmp_path/store``, bucket ``live`` made), segments read
    from ``tmp_path/segments``. ``settings`` are UploaderConfig settings on top. Use in a with."""

    def __init__(self, tmp_path: Path, store_class: type[FileStore] = FileStore, **settings: Any) -> None:
        self.segments, self.root = tmp_path / "segments", tmp_path / "store"
        self.segments.mkdir()
        (self.root / "live").mkdir(parents=True)
        self.config = UploaderConfig.from_settings({
            "spool_dir": str(tmp_path / "spool"), "bucket": ["live"], "allow_dir": [str(self.segments)],
            "store": f"file://{self.root}", **settings})
        self.store = store_class(self.root)
        self.metrics = DaemonMetrics()
        self.spool = Spool.open(self.config.spool_dir)
        payloads = PayloadStore(self.config.spool_dir, max_inflight_bytes=self.config.max_payload_inflight_bytes)
        payloads.open()
        self.spool_thread = SpoolThread(self.spool)
        self.publisher = Publisher(config=self.config, spool=self.spool_thread, store=self.store,
                                   allowed=AllowedDirs(self.config.allow_dirs), payloads=payloads,
                                   metrics=self.metrics.destination("files"), rng=random.Random(1))

    def __enter__(self) -> LocalPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.spool_thread.close()
        self.spool.close()

    async def queue(self, message: IndexMessage) -> None:
        """Queue ``message`` as the intake would, and tell the publisher."""
        await self.spool_thread.call(Spool.enqueue, self.spool, message)
        self.publisher.notify(message.stream_id)

    async def settle(self) -> None:
        """Wait (up to 30 s) until nothing is left queued, then drain the publisher."""
        for _ in range(SETTLE_STEPS):
            await asyncio.sleep(0.1)
            if not await self.spool_thread.call(Spool.streams_with_work, self.spool):
                break
        await self.publisher.drain(30)
