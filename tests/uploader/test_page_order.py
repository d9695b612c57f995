"""The player page ends up playing the master, whatever order its PUTs finish in.

A program's first rendition to publish puts a page that plays its own playlist; once the master
is first uploaded, the page is put again to play the master. When the first PUT was still on its
way then (a slow store), it must not land after the second: viewers would play one rendition for
the rest of the stream (found by the live ladder test: two PUTs of index.html 12 ms apart).
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

from tests.support.daemon import legit_message, place_segment
from tests.support.publisher import LocalPublisher
from uploader.stores import FileStore

RENDITIONS = ("low", "mid", "high")
SEGMENTS = 4
# How long the first page PUT is held for the master to be uploaded meanwhile, and then for
# another page PUT to finish before it (one that waits for it never does).
HOLD_S = 10.0
OVERTAKE_S = 2.0


class FirstPageHeldStore(FileStore):
    """A file:// store whose first PUT of a player page waits until the master has been put and
    another page PUT has finished (or OVERTAKE_S has passed): a slow first PUT."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.master_put = threading.Event()
        self.held = threading.Event()  # set once the first page PUT has been held
        self.overtaken = threading.Event()  # set when a later page PUT finished
        self._lock = threading.Lock()
        self.held_page = b""  # the body of the page PUT held
        self.pages: list[bytes] = []  # every page body, in the order the PUTs finished

    def put(self, bucket: str, key: str, body, **options):  # type: ignore[no-untyped-def]
        page = key.endswith("/index.html")
        with self._lock:
            first = page and not self.held.is_set()
            if first:
                self.held.set()
        if first:
            self.held_page = bytes(body)
            self.master_put.wait(HOLD_S)
            self.overtaken.wait(OVERTAKE_S)
        result = super().put(bucket, key, body, **options)
        if page:
            self.pages.append((self.root / bucket / key).read_bytes())
            if not first:
                self.overtaken.set()
        return result

    def put_version(self, bucket: str, key: str, body: bytes, **options):  # type: ignore[no-untyped-def]
        result = super().put_version(bucket, key, body, **options)
        if key.endswith("/master.m3u8"):
            self.master_put.set()
        return result


def test_the_page_put_before_the_master_cannot_land_after_the_master_s_page(
    tmp_path: Path, segment_source: Path,
) -> None:
    with LocalPublisher(tmp_path, FirstPageHeldStore, player_page=True, max_inflight=4) as local:
        store = local.store
        assert isinstance(store, FirstPageHeldStore)

        async def publish() -> None:
            # The first rendition's window fills first: its page goes out (and is held) before the
            # other two make the master (which the first, held at its page, is not in yet).
            for name in RENDITIONS:
                for number in range(1, SEGMENTS + 1):
                    place_segment(segment_source, local.segments / name, name, number)
                    await local.queue(legit_message(local.segments / name, "live", number, end=number == SEGMENTS,
                                                    key_prefix="ch1", index=f"{name}.m3u8", prefix=name))
                if name == RENDITIONS[0]:
                    for _ in range(100):
                        if store.held.is_set():
                            break
                        await asyncio.sleep(0.1)
            await local.settle()

        asyncio.run(publish())
    assert store.held.is_set() and store.master_put.is_set(), "the race was not set up"
    assert len(store.pages) >= 2, store.pages
    assert b'href="low.m3u8"' in store.held_page, "the held page was not the first rendition's"
    final = (local.root / "live" / "ch1" / "index.html").read_bytes()
    assert b'href="master.m3u8"' in final, re.findall(rb'id="stream" href="[^"]*"', final)
