"""Reading the --metrics-listen endpoint of hls-uploadd or hls-segment as Prometheus would."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from .viewer import http_get, wait_for

_ENDPOINT = re.compile(r"metrics on (http://\S+)/metrics")


def endpoint_of(log: str) -> str:
    """The endpoint's base URL (``http://HOST:PORT``) as the program's log announced it."""
    found = _ENDPOINT.findall(log)
    assert found, "no 'metrics on ...' line in the log"
    return found[-1]


def endpoint_in(read_log: object, timeout: float = 30.0) -> str:
    """``endpoint_of`` the log ``read_log()`` returns, once it names one."""
    return wait_for(lambda: _ENDPOINT.findall(read_log()) and endpoint_of(read_log()),  # type: ignore[operator]
                    timeout=timeout, message="the metrics endpoint's log line")


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample, by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    text: str

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` with exactly ``labels``, a ``destination`` label left out matching
        the daemon's one destination; None when there is none."""
        wanted = frozenset(labels.items())
        if (name, wanted) in self.samples or "destination" in labels:
            return self.samples.get((name, wanted))
        found = [value for (have_name, have), value in self.samples.items()
                 if have_name == name and {item for item in have if item[0] != "destination"} == wanted
                 and len(have) == len(wanted) + 1]
        assert len(found) <= 1, f"{name}{labels} is at several destinations: name the one meant"
        return found[0] if found else None

    def labelled(self, **labels: str) -> list[str]:
        """The names of the samples whose labels include ``labels``."""
        wanted = set(labels.items())
        return sorted(name for name, have in self.samples if wanted <= have)


def scrape(base: str) -> Scrape:
    """GET ``base``/metrics and parse it with prometheus-client's own parser."""
    response = http_get(f"{base}/metrics")
    assert response.status == 200, response.status
    text = response.body.decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, text)


def check(base: str, path: str) -> tuple[int, str]:
    """GET a health path: (status, body)."""
    response = http_get(f"{base}{path}")
    return response.status, response.body.decode().strip()
