"""Real read-only and full file systems (a tmpfs in a private mount namespace, ``unshare -m``):
the CLI's one-line error for EROFS before any work, and for ENOSPC when the results are written.
Skipped where mount namespaces are not allowed (not root, no CAP_SYS_ADMIN)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_cli_helpers import BALANCED, write_small_pair_set

SRC = Path(__file__).resolve().parents[2] / "src"


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _namespaces_work(), reason="unshare -m (mount namespaces) not allowed"),
]


def _in_tmpfs(mount: Path, options: str, setup: str,
              argv: list) -> subprocess.CompletedProcess:
    """Run ``marginface ARGV`` with a fresh tmpfs (``options``) on ``mount``, after ``setup``;
    stdout ends with ``LISTING`` and the files left in the tmpfs afterwards."""
    mount.mkdir()
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "marginface", *argv])
    where = shlex.quote(str(mount))
    script = (f"mount -t tmpfs -o {options} tmpfs {where} && {setup} {command}; rc=$?; "
              f"echo LISTING; cd {where} && find . -mindepth 1 | sort; exit $rc")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()
             and "Warning" not in line and "warnings.warn" not in line]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.fault(kind="output path", fault="read-only file system (real ro tmpfs mount)",
                   behaviour="exit 2 before loading anything, one line naming --out and EROFS")
def test_read_only_mount(tmp_path):
    mount = tmp_path / "ro"
    done = _in_tmpfs(mount, "ro,size=1m", "", ["evaluate", tmp_path / "none", "--pairs", "x",
                                               "--out", mount / "out"])
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert "--out" in line and str(mount) in line and "read-only file system" in line


@pytest.mark.fault(kind="evaluate output", fault="disk full (real full tmpfs) when writing",
                   behaviour="exit 2 after the work, one line 'no space left'; no partial file")
def test_full_disk_when_writing(tmp_path):
    root = write_small_pair_set(tmp_path, BALANCED)
    mount = tmp_path / "full"
    fill = f"dd if=/dev/zero of={shlex.quote(str(mount / 'fill'))} bs=4k 2>/dev/null;"
    done = _in_tmpfs(mount, "size=256k", fill,
                     ["evaluate", root / "tiny.safetensors", "--pairs", root / "pairs.txt",
                      "--out", mount / "out", "--n-folds", "2", "--no-progress", "--workers",
                      "0"])
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert "no space left on the device" in line and str(mount) in line
    left = done.stdout.split("LISTING", 1)[1].split()
    assert left == ["./fill", "./out"]  # the out folder, empty: no partial or temporary file
