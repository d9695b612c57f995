"""Reading segment files: only regular files under allowed directories, symlinks never followed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import drop_from_page_cache
from uploader.files import AllowedDirs, DirectoryRefused, OpenDirectories, SegmentFileError, WouldBlock

NAME = "seg-00001.ts"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / NAME).write_bytes(b"inside")
    (allowed / "sub" / NAME).write_bytes(b"inside-sub")
    (outside / NAME).write_bytes(b"SECRET")
    return {"allowed": allowed, "outside": outside}


def dirs(*paths: Path) -> AllowedDirs:
    return AllowedDirs(tuple(Path(os.path.realpath(p)) for p in paths))


def read(allowed: AllowedDirs, directory: Path | str, name: str = NAME) -> bytes:
    with allowed.open_segment(str(directory), name) as file:
        return file.read()


def test_reads_a_segment_in_an_allowed_directory_and_below(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    assert read(allowed, tree["allowed"]) == b"inside"
    assert read(allowed, f"{tree['allowed']}/") == b"inside"  # the original sends "/tmp/"
    assert read(allowed, tree["allowed"] / "sub") == b"inside-sub"


def test_default_allows_nothing(tree: dict[str, Path]) -> None:
    with pytest.raises(DirectoryRefused, match=r"is not allowed \(add --allow-dir .*allowed\)"):
        dirs().resolve(str(tree["allowed"]))


def test_other_directories_are_refused_with_the_option_to_add(tree: dict[str, Path]) -> None:
    with pytest.raises(DirectoryRefused, match=f"add --allow-dir {tree['outside']}"):
        read(dirs(tree["allowed"]), tree["outside"])


def test_a_sibling_whose_name_extends_an_allowed_one_is_refused(tree: dict[str, Path]) -> None:
    # /x/allowed-evil starts with the text /x/allowed but is not below it: paths are compared by
    # component, never as strings.
    sibling = tree["allowed"].with_name("allowed-evil")
    sibling.mkdir()
    (sibling / NAME).write_bytes(b"SECRET")
    allowed = dirs(tree["allowed"])
    for directory in (sibling, f"{sibling}/", tree["allowed"].with_name("allowedx")):
        with pytest.raises(DirectoryRefused, match="is not allowed"):
            allowed.resolve(str(directory))
    with pytest.raises(DirectoryRefused):
        read(allowed, sibling)


def test_relative_and_dotdot_paths(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    with pytest.raises(DirectoryRefused, match="absolute"):
        allowed.resolve("tmp/")
    with pytest.raises(DirectoryRefused, match="not allowed"):
        allowed.resolve(f"{tree['allowed']}/../outside")
    assert read(allowed, f"{tree['outside']}/../allowed/sub") == b"inside-sub"


def test_a_symlinked_directory_pointing_outside_is_refused(tree: dict[str, Path]) -> None:
    (tree["allowed"] / "escape").symlink_to(tree["outside"])
    with pytest.raises(DirectoryRefused, match="not allowed"):
        read(dirs(tree["allowed"]), tree["allowed"] / "escape")


def test_a_symlinked_segment_file_is_refused_even_pointing_inside(tree: dict[str, Path]) -> None:
    (tree["allowed"] / "link").mkdir()
    (tree["allowed"] / "link" / NAME).symlink_to(tree["outside"] / NAME)
    with pytest.raises(SegmentFileError, match="symlink"):
        read(dirs(tree["allowed"]), tree["allowed"] / "link")
    (tree["allowed"] / "link" / NAME).unlink()
    (tree["allowed"] / "link" / NAME).symlink_to(tree["allowed"] / NAME)
    with pytest.raises(SegmentFileError, match="symlink"):
        read(dirs(tree["allowed"]), tree["allowed"] / "link")


def test_directory_swapped_for_a_symlink_after_the_check(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Time of check vs time of use: the check passes, then the directory becomes a symlink out."""
    allowed = dirs(tree["allowed"])
    sub = tree["allowed"] / "sub"
    real_resolve = AllowedDirs.resolve

    def check_then_swap(self: AllowedDirs, directory: str) -> tuple[Path, tuple[str, ...]]:
        result = real_resolve(self, directory)
        os.rename(sub, tree["allowed"] / "sub.old")
        sub.symlink_to(tree["outside"])
        return result

    monkeypatch.setattr(AllowedDirs, "resolve", check_then_swap)
    with pytest.raises(SegmentFileError, match="symlink"):
        read(allowed, sub)


def test_file_swapped_for_a_symlink_after_the_check(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = dirs(tree["allowed"])
    real_resolve = AllowedDirs.resolve

    def check_then_swap(self: AllowedDirs, directory: str) -> tuple[Path, tuple[str, ...]]:
        result = real_resolve(self, directory)
        (tree["allowed"] / NAME).unlink()
        (tree["allowed"] / NAME).symlink_to(tree["outside"] / NAME)
        return result

    monkeypatch.setattr(AllowedDirs, "resolve", check_then_swap)
    with pytest.raises(SegmentFileError, match="symlink"):
        read(allowed, tree["allowed"])


def test_missing_and_non_regular_files(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    with pytest.raises(SegmentFileError, match="does not exist"):
        read(allowed, tree["allowed"], "seg-00002.ts")
    (tree["allowed"] / "seg-00003.ts").mkdir()
    with pytest.raises(SegmentFileError, match="not a regular file"):
        read(allowed, tree["allowed"], "seg-00003.ts")
    os.mkfifo(tree["allowed"] / "seg-00004.ts")  # must not block the daemon
    with pytest.raises(SegmentFileError, match="not a regular file"):
        read(allowed, tree["allowed"], "seg-00004.ts")


@pytest.mark.parametrize("name", ["../seg-00001.ts", "seg-1.ts", "seg-00001.ts.part", "/etc/passwd", ".hidden-00001.ts"])
def test_only_segment_names_are_opened(tree: dict[str, Path], name: str) -> None:
    with pytest.raises(SegmentFileError, match="not a segment file name"):
        read(dirs(tree["allowed"]), tree["allowed"], name)


def test_allowed_root_given_through_a_symlink(tmp_path: Path, tree: dict[str, Path]) -> None:
    (tmp_path / "alias").symlink_to(tree["allowed"])
    allowed = dirs(tmp_path / "alias")  # resolved at startup, as the config does
    assert read(allowed, tmp_path / "alias") == b"inside"
    assert read(allowed, tree["allowed"]) == b"inside"


# -- directories kept open ------------------------------------------------------------------------

def counting_resolves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_resolve = AllowedDirs.resolve

    def resolve(self: AllowedDirs, directory: str) -> tuple[Path, tuple[str, ...]]:
        calls.append(directory)
        return real_resolve(self, directory)

    monkeypatch.setattr(AllowedDirs, "resolve", resolve)
    return calls


def test_a_directory_is_resolved_once_while_its_path_names_it(tree: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_resolves(monkeypatch)
    allowed = dirs(tree["allowed"])
    sub = str(tree["allowed"] / "sub")
    assert read(allowed, sub) == b"inside-sub"
    (tree["allowed"] / "sub" / "seg-00002.ts").write_bytes(b"second")
    assert read(allowed, sub, "seg-00002.ts") == b"second"
    allowed.check(sub)
    allowed.remove_segment(sub, "seg-00002.ts")
    assert not (tree["allowed"] / "sub" / "seg-00002.ts").exists()
    assert calls == [sub]


def test_a_path_that_names_another_directory_since_is_checked_again(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    sub = tree["allowed"] / "sub"
    assert read(allowed, sub) == b"inside-sub"
    # Replaced by a new directory: its file is read, not the kept one's.
    os.rename(sub, tree["allowed"] / "sub.old")
    sub.mkdir()
    (sub / NAME).write_bytes(b"new-sub")
    assert read(allowed, sub) == b"new-sub"
    # Replaced by a symlink out of the roots: refused, though the path was checked before.
    os.rename(sub, tree["allowed"] / "sub.new")
    sub.symlink_to(tree["outside"])
    with pytest.raises(DirectoryRefused, match="not allowed"):
        allowed.check(str(sub))
    with pytest.raises(DirectoryRefused, match="not allowed"):
        read(allowed, sub)
    # Gone: said as before.
    sub.unlink()
    with pytest.raises(SegmentFileError, match="does not exist"):
        read(allowed, sub)


def test_the_least_recently_used_directory_is_closed_past_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for n in range(5):
        (root / f"d{n}").mkdir(parents=True)
        (root / f"d{n}" / NAME).write_bytes(b"%d" % n)
    allowed = AllowedDirs((root.resolve(),), OpenDirectories(limit=3))
    before = len(os.listdir("/proc/self/fd"))
    for n in range(5):
        assert read(allowed, root / f"d{n}") == b"%d" % n
    assert len(allowed.opened) == 3
    assert len(os.listdir("/proc/self/fd")) == before + 3
    assert allowed.opened.get(str(root / "d0")) is None  # closed first
    allowed.opened.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_directory_not_used_for_a_while_is_closed(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    assert read(allowed, tree["allowed"]) == b"inside"
    assert read(allowed, tree["allowed"] / "sub") == b"inside-sub"
    before = len(os.listdir("/proc/self/fd"))
    allowed.opened.close_idle(3600.0)
    assert len(allowed.opened) == 2
    allowed.opened.close_idle(0.0)
    assert len(allowed.opened) == 0 and len(os.listdir("/proc/self/fd")) == before - 2
    assert read(allowed, tree["allowed"]) == b"inside"  # opened again when named again


# -- the MPEG-TS check from the page cache (on the event loop) ------------------------------------

def test_the_check_from_the_page_cache_gives_the_verdict_of_a_read(tree: dict[str, Path], segment_source: Path) -> None:
    allowed = dirs(tree["allowed"])
    # Three times a real segment: whole packets over more than one chunk of the check.
    (tree["allowed"] / "seg-00002.ts").write_bytes(segment_source.read_bytes() * 3)
    (tree["allowed"] / "seg-00003.ts").write_bytes(segment_source.read_bytes()[:-100])
    expected_reasons = [("seg-00002.ts", None), ("seg-00003.ts", "not a whole number of 188-byte packets"),
                        (NAME, "not a whole number")]
    for name, expected in expected_reasons:
        cached = allowed.not_mpegts(str(tree["allowed"]), name, cached_only=True)
        assert cached == allowed.not_mpegts(str(tree["allowed"]), name)
        assert cached is None if expected is None else expected in cached
    assert allowed.not_mpegts(str(tree["allowed"]), "seg-00009.ts", cached_only=True) is None  # missing: said at upload


def test_the_check_from_the_page_cache_would_block_on_a_file_the_cache_has_not(
    tree: dict[str, Path], segment_source: Path
) -> None:
    allowed = dirs(tree["allowed"])
    path = tree["allowed"] / "seg-00002.ts"
    path.write_bytes(segment_source.read_bytes())
    if not drop_from_page_cache(path):
        pytest.skip(f"the file system of {path} is tmpfs: its pages never leave the cache")
    with pytest.raises(WouldBlock):
        allowed.not_mpegts(str(tree["allowed"]), "seg-00002.ts", cached_only=True)
    assert allowed.not_mpegts(str(tree["allowed"]), "seg-00002.ts") is None  # read, so now cached
    assert allowed.not_mpegts(str(tree["allowed"]), "seg-00002.ts", cached_only=True) is None


def test_a_directory_moved_out_of_the_roots_is_not_used_again(tree: dict[str, Path]) -> None:
    """A hostile local user moves a checked directory out of the roots and puts a symlink to
    it where it was: the path still names the kept directory, which is no longer under a root."""
    allowed = dirs(tree["allowed"])
    sub = tree["allowed"] / "sub"
    assert read(allowed, sub) == b"inside-sub"
    os.rename(sub, tree["outside"] / "sub")
    (tree["outside"] / "sub" / NAME).write_bytes(b"SECRET")
    sub.symlink_to(tree["outside"] / "sub")
    with pytest.raises(DirectoryRefused, match="not allowed"):
        allowed.check(str(sub))
    with pytest.raises(DirectoryRefused, match="not allowed"):
        read(allowed, sub)
    with pytest.raises(DirectoryRefused, match="not allowed"):
        allowed.remove_segment(str(sub), NAME)
    assert (tree["outside"] / "sub" / NAME).read_bytes() == b"SECRET"


def test_out_of_descriptors_a_kept_directory_is_checked_afresh_and_a_read_fails_as_a_segment_file_error(
    tree: dict[str, Path],
) -> None:
    # In a process of its own: the descriptor limit is lowered until nothing more can be opened.
    script = f"""
import os, resource
from pathlib import Path
from uploader.files import AllowedDirs, SegmentFileError
allowed = AllowedDirs((Path({str(tree["allowed"].resolve())!r}),))
directory = {str(tree["allowed"] / "sub")!r}
with allowed.open_segment(directory, {NAME!r}) as file:
    assert file.read() == b"inside-sub"
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
allowed.check(directory)  # no descriptor needed
try:
    allowed.open_segment(directory, {NAME!r})
except SegmentFileError as error:
    print("SegmentFileError", error)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.startswith("SegmentFileError"), done.stdout + done.stderr
    assert "Too many open files" in done.stdout


def test_a_huge_or_sparse_file_is_not_read_on_the_event_loop_nor_past_its_first_bad_packet(tree: dict[str, Path]) -> None:
    allowed = dirs(tree["allowed"])
    with open(tree["allowed"] / "seg-00002.ts", "wb") as file:
        file.truncate(1 << 40)  # 1 TiB of holes: read without waiting for storage, for hours
    with pytest.raises(WouldBlock):
        allowed.not_mpegts(str(tree["allowed"]), "seg-00002.ts", cached_only=True)
    reason = allowed.not_mpegts(str(tree["allowed"]), "seg-00002.ts")  # returns: stops at byte 0
    assert reason is not None and "no sync byte 0x47 at byte 0" in reason
