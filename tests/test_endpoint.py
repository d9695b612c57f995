"""The operator's endpoint both programs serve (common/endpoint.py), on a real loopback socket:
what a check or a collector that fails gives, and what an unknown path gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.registry import Collector

from common.endpoint import OperatorEndpoint
from tests.support.scrape import check, scrape


class Failing(Collector):
    def collect(self) -> Iterator[object]:
        raise TimeoutError("the event loop or the spool did not answer in 5 s")


def serve(registry: CollectorRegistry, **checks: object) -> Iterator[str]:
    endpoint = OperatorEndpoint(registry, {f"/{name}": check for name, check in checks.items()})  # type: ignore[misc]
    host, port = endpoint.start("127.0.0.1", 0)
    try:
        yield f"http://{host}:{port}"
    finally:
        endpoint.stop()


@pytest.fixture
def base() -> Iterator[str]:
    registry = CollectorRegistry()
    Counter("things", "Things.", registry=registry).inc(3)

    def broken() -> str | None:
        raise OSError("disk gone")

    yield from serve(registry, healthz=lambda: None, readyz=lambda: "stream a/b/c held for 31 s: refused",
                     broken=broken)


def test_checks_answer_ok_or_503_with_their_reason(base: str) -> None:
    assert check(base, "/healthz") == (200, "ok")
    assert check(base, "/readyz") == (503, "stream a/b/c held for 31 s: refused")
    assert check(base, "/broken") == (503, "check failed: OSError: disk gone")
    assert check(base, "/other")[0] == 404
    assert scrape(base).value("things_total") == 3


def test_metrics_that_cannot_be_read_are_a_503_naming_why() -> None:
    registry = CollectorRegistry()
    registry.register(Failing())
    for base in serve(registry):
        assert check(base, "/metrics") == (
            503, "metrics cannot be read: TimeoutError: the event loop or the spool did not answer in 5 s")
