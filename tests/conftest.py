"""Fixtures every test may use: a real SeaweedFS, fresh buckets, test media, free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError
from hypothesis import settings

from tests.support import net, process_logs
from tests.support.media import MediaCache
from tests.support.seaweed import SeaweedServer, bucket_name
from tests.support.viewer import SEEN, NonConformant

# For `mutmut run` (docs/testing.md): the same examples for every mutant, so a verdict does not
# depend on luck, and no deadline, since mutated code runs slower under a busy machine.
settings.register_profile("mutation", deadline=None, derandomize=True, database=None)

# Written to AWS_CONFIG_FILE so that boto3 in daemon subprocesses uses path-style
# URLs against the loopback endpoint, as our own clients do.
AWS_CONFIG = """\
[default]
region = us-east-1
s3 =
    addressing_style = path
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    # Clips are named by their parameters, so one directory can serve many runs: mutation
    # testing runs the tests once per mutant and would otherwise encode the same clips each time.
    parser.addoption("--media-cache", metavar="DIR", help="keep generated test clips in DIR across runs")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark, when installed, warns at start-up that xdist disables it;
    # with filterwarnings = error that warning aborts every `pytest -n N` run.
    config.addinivalue_line(
        "filterwarnings", "ignore:Benchmarks are automatically disabled because xdist plugin is active"
    )


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS per pytest process (each xdist worker has its own).

    For the rest of the session the environment points boto3 at it, so daemon
    subprocesses that tests start find it without extra options. A test that
    stops this server must start it again; fault tests that kill S3 are better
    off with their own `SeaweedServer(tmp_path)`.
    """
    base = tmp_path_factory.mktemp("seaweed")
    aws_config = base / "aws-config"
    aws_config.write_text(AWS_CONFIG)
    with SeaweedServer(base) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", str(aws_config))
        # Keep a developer's own AWS setup (profiles, tokens, ~/.aws) out of the tests.
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(base / "no-aws-credentials"))
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        # Never wait for an EC2 metadata service when a test removes credentials.
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield server


@pytest.fixture(scope="session")
def s3(seaweed: SeaweedServer) -> Iterator[BaseClient]:
    """A boto3 S3 client for the session's SeaweedFS."""
    client = seaweed.client()
    yield client
    client.close()


@pytest.fixture
def bucket(request: pytest.FixtureRequest, seaweed: SeaweedServer, s3: BaseClient) -> Iterator[str]:
    """A new, empty bucket named after the test; deleted afterwards with its objects."""
    name = bucket_name(request.node.name)
    s3.create_bucket(Bucket=name)
    yield name
    # Every bucket holds a SeaweedFS volume, and their number is capped by free disk.
    # A test that left S3 stopped must not also fail in teardown, hence best effort.
    if seaweed.running:
        try:
            s3.delete_bucket(Bucket=name)  # weed deletes non-empty buckets too
        except (BotoCoreError, ClientError):
            pass


@pytest.fixture(scope="session")
def media_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept: str | None = request.config.getoption("media_cache")
    return Path(kept).resolve() if kept else tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def media(media_dir: Path) -> MediaCache:
    """Test clips made once per session: media.ts(seconds=6), media.wrapping_ts(), ..."""
    return MediaCache(media_dir)


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    return net.free_port()


def pytest_runtest_setup(item: pytest.Item) -> None:
    SEEN.clear()  # before the fixtures: what they read is checked with the test
    process_logs.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test's report ends with the tail of each daemon's and segmenter's log it
    started (tests/support/process_logs.py): an intermittent failure keeps its cause."""
    report = yield
    if report.failed:
        for title, tail in process_logs.tails():
            report.sections.append((title, tail))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Every playlist version a test read (tests/support/viewer.py, SEEN) passes the RFC 8216
    checker: a test may look at one detail of a playlist, the checker looks at all of them. A
    problem fails the test itself (so an xfail naming a known bug covers it)."""
    result = yield
    problems = SEEN.problems()
    SEEN.clear()
    if problems:
        raise NonConformant("playlists read by this test break RFC 8216:\n" + "\n".join(problems))
    return result
