"""`-o FILE`: the output goes where the user said, and nowhere else, whatever kind of node is there.

A regular file is replaced atomically; a symlink is followed and its target replaced (the link
stays); a FIFO or a device is written directly, never replaced; a folder or a missing folder is
refused with one line (exit 2).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from mlops.errors import InvalidPathError
from mlops.fsio import TMP_PREFIX, output_writer, write_output
from mlops.tracking import store


class FifoReader:
    """Reads a FIFO to its end in a thread (a writer's open blocks until a reader opens it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as handle:
            self.data = handle.read()

    def join(self) -> bytes:
        self.thread.join(timeout=30)
        if self.thread.is_alive():  # never written: unblock our own reader so the test ends
            with open(self.path, "wb"):
                pass
            self.thread.join(timeout=5)
            pytest.fail(f"nothing was ever written into the FIFO {self.path}")
        return self.data


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "internal error" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- the helper, node by node -------------------------------------------------------------------


def test_a_regular_file_is_replaced_atomically_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    os.chmod(target, 0o640)
    reader = open(target, "rb")  # a reader holding the old file sees the old file whole
    inode = target.stat().st_ino
    write_output(target, "new content")
    assert target.read_text() == "new content"
    assert target.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert reader.read() == b"old"
    reader.close()
    assert _leftovers(tmp_path) == []


def test_a_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_output(tmp_path / "new.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_a_failure_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("complete old output\n")
    with pytest.raises(RuntimeError), output_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("the work failed")
    assert target.read_text() == "complete old output\n"
    assert _leftovers(tmp_path) == []


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "out.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_output(link, "through the link")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "through the link"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "real") == []


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link.txt"
    link.symlink_to("target.txt")
    write_output(link, "made")
    assert link.is_symlink() and (tmp_path / "target.txt").read_text() == "made"


def test_a_fifo_is_written_directly_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    write_output(fifo, b"streamed " * 1000)
    assert reader.join() == b"streamed " * 1000
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _leftovers(tmp_path) == []


def test_a_symlink_to_a_fifo_writes_into_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    reader = FifoReader(fifo)
    write_output(link, b"via link")
    assert reader.join() == b"via link"
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_character_device_is_written_directly(tmp_path: Path) -> None:
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device, as our own node
        os.open(device, os.O_WRONLY)  # a filesystem mounted nodev refuses to open it
    except OSError:
        device = Path("/dev/null")
    write_output(device, b"discarded")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert _leftovers(device.parent) == []


def test_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    with pytest.raises(InvalidPathError, match="is a folder") as caught:
        write_output(folder, b"x")
    assert caught.value.exit_code == 2
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("rel", ["missing/out.html", "missing/deeper/out.html"])
def test_a_missing_folder_is_refused_not_created(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InvalidPathError, match="does not exist") as caught:
        write_output(tmp_path / rel, b"x")
    assert caught.value.exit_code == 2
    assert not (tmp_path / "missing").exists()


def test_a_file_where_a_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    with pytest.raises(InvalidPathError) as caught:
        write_output(tmp_path / "file" / "out.html", b"x")
    assert caught.value.exit_code == 2
    assert (tmp_path / "file").read_text() == "keep"


def test_a_symlink_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "out.txt")
    with pytest.raises(InvalidPathError, match="does not exist"):
        write_output(link, b"x")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


# --- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def run_id(repo) -> str:
    info = store.create_run(repo, name="curve")
    for step in range(3):
        store.log_metrics(repo, info["id"], {"loss": 1.0 / (step + 1)}, step=step)
    store.finish_run(repo, info["id"])
    return info["id"]


def test_plots_into_a_fifo(repo, cli, run_id, tmp_path: Path) -> None:
    fifo = tmp_path / "plots.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    cli("plots", run_id, "-o", str(fifo))
    assert b"<svg" in reader.join()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_plots_to_dev_stdout_reaches_the_pipe(repo, mlops_bin, run_id) -> None:
    proc = mlops_bin("plots", run_id, "-o", "/dev/stdout", cwd=repo.root)
    assert "<svg" in proc.stdout and proc.stdout.lstrip().startswith("<!")


def test_plots_through_a_symlink(repo, cli, run_id, tmp_path: Path) -> None:
    real = tmp_path / "published.html"
    real.write_text("old")
    (repo.root / "plots.html").symlink_to(real)
    cli("plots", run_id, "-o", "plots.html")  # a name the user typed: the link is followed
    assert (repo.root / "plots.html").is_symlink()
    assert "<svg" in real.read_text()


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_plots_refuses_a_folder_or_a_missing_folder_with_one_line(repo, mlops_bin, run_id, tmp_path, kind) -> None:
    if kind == "folder":
        target = tmp_path / "out"
        target.mkdir()
    else:
        target = tmp_path / "absent" / "plots.html"
    proc = mlops_bin("plots", run_id, "-o", str(target), cwd=repo.root, code=2)
    assert len(_error_lines(proc.stderr)) == 1
    assert str(target) in proc.stderr
    if kind == "folder":
        assert list(target.iterdir()) == []
    else:
        assert not target.parent.exists()


def test_schema_infer_and_card_use_the_same_rule(repo, cli, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,x\n2,y\n")
    fifo = tmp_path / "schema.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    cli("schema", "infer", str(data), "-o", str(fifo))
    assert b"columns" in reader.join()
    result = cli("schema", "infer", str(data), "-o", str(tmp_path / "no" / "schema.yaml"), code=2)
    assert len(_error_lines(result.stderr)) == 1
    result = cli("card", "nosuchmodel:1", "-o", str(tmp_path), code=2)
    assert "is a folder" in result.stderr


def test_dev_stdout_redirected_to_a_file_is_appended_not_replaced(repo, run_id, tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "captured.html"
    target.write_text("printed before\n")
    inode = target.stat().st_ino
    mlops = str(Path(sys.executable).with_name("mlops"))
    with open(target, "a") as handle:  # the shell's `>> captured.html`
        subprocess.run([mlops, "plots", run_id, "-o", "/dev/stdout"], cwd=repo.root, stdout=handle, check=True)
    assert target.stat().st_ino == inode  # the shell's file, written through, not swapped for a new one
    text = target.read_text()
    assert text.startswith("printed before\n") and "<svg" in text
