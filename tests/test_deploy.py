"""`make deploy` (flows/deploy.py) without a board: what it checks before contacting one, how
it fails on a host it cannot reach, and the ssh / scp commands it issues.

Stand-ins for ``ssh`` / ``scp`` on PATH record their arguments; one test uses the real ssh
against a TEST-NET address (192.0.2.1, RFC 5737: never routed) with a 2-second connect timeout.
"""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from flows import deploy

HOST = "nobody@192.0.2.1"


def make_bundle(folder: Path, bit=True) -> Path:
    (folder / "bhvit_driver").mkdir(parents=True)
    (folder / "bhvit_driver" / "params.json").write_text(json.dumps(dict(model="m", bitfile="m.bit")))
    if bit:
        (folder / "m.bit").write_bytes(b"bit")
        (folder / "m.hwh").write_text("<hwh/>")
    return folder


def stand_in(tmp_path, monkeypatch, ssh_script: str, scp_script: str = 'exit 0'):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for tool, body in (("ssh", ssh_script), ("scp", scp_script)):
        (bin_dir / tool).write_text(f'#!/bin/bash\nprintf "%s\\x1f" {tool} "$@" >> {log}; echo >> {log}\n{body}\n')
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def calls(log: Path):
    return [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()] if log.exists() else []


def run(capsys, *args):
    rc = deploy.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_no_host_or_no_bitstream_exit_2_before_any_ssh(capsys, tmp_path, monkeypatch):
    log = stand_in(tmp_path, monkeypatch, "exit 0")
    monkeypatch.delenv("PYNQ_HOST", raising=False)
    rc, _, err = run(capsys, "--bundle", make_bundle(tmp_path / "b"))
    assert rc == 2 and "PYNQ_HOST=user@address" in err
    rc, _, err = run(capsys, "--host", HOST, "--bundle", tmp_path / "nothing")
    assert rc == 2 and "make bitstream" in err
    rc, _, err = run(capsys, "--host", HOST, "--bundle", make_bundle(tmp_path / "nobit", bit=False))
    assert rc == 2 and "m.bit / m.hwh" in err and "--bundle-only" in err
    rc, _, err = run(capsys, "--host", HOST, "--board", "pynq-z9", "--bundle", tmp_path / "b")
    assert rc == 2 and "unknown board" in err
    assert calls(log) == []


def test_unreachable_host_fails_fast_with_sshs_reason(capsys, tmp_path, monkeypatch):
    log = stand_in(tmp_path, monkeypatch,
                   'echo "ssh: connect to host 192.0.2.1 port 22: Connection timed out" >&2; exit 255')
    t0 = time.time()
    rc, _, err = run(capsys, "--host", HOST, "--bundle", make_bundle(tmp_path / "b"), "--connect-timeout", 3)
    assert rc == 3 and time.time() - t0 < 5
    assert f"cannot reach {HOST}" in err and "Connection timed out" in err and "ssh-copy-id" in err
    (c,) = calls(log)                       # one probe, nothing copied
    assert c[0] == "ssh" and "BatchMode=yes" in c and "ConnectTimeout=3" in c and c[-2:] == [HOST, "true"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_unreachable_host_with_the_real_ssh(capsys, tmp_path):
    t0 = time.time()
    rc, _, err = run(capsys, "--host", HOST, "--bundle", make_bundle(tmp_path / "b"), "--connect-timeout", 2)
    assert rc == 3 and time.time() - t0 < 20
    assert f"cannot reach {HOST}" in err


def test_reachable_host_copies_runs_and_brings_back_the_results(capsys, tmp_path, monkeypatch):
    """The plumbing with a board that answers: the ssh stand-in accepts everything; the scp
    stand-in copies a results.json, written here as the board's driver would, back."""
    board_results = tmp_path / "board_results_src.json"
    board_results.write_text(json.dumps(dict(sample=dict(bit_exact=True, images=4),
                                             benchmark=dict(images_per_s=1234.5, batch_size=1000,
                                                            latency_one_image_s=0.002),
                                             accuracy=dict(accuracy=0.9, images=10, correct=9))))
    log = stand_in(tmp_path, monkeypatch, "exit 0",
                   f'if [[ "$*" == *results.json* ]]; then cp {board_results} "${{@: -1}}"; fi; exit 0')
    bundle = make_bundle(tmp_path / "b")
    rc, out, err = run(capsys, "--host", HOST, "--bundle", bundle, "--remote-dir", "bh dir", "--driver-args",
                       "--limit 100")
    assert rc == 0, err
    c = calls(log)
    assert [x[0] for x in c] == ["ssh", "ssh", "scp", "ssh", "scp"]
    assert c[1][-1] == "rm -rf 'bh dir'"
    assert c[2][-2:] == [str(bundle), f"{HOST}:bh dir"] and "-r" in c[2]
    assert c[3][-1].startswith("cd 'bh dir' && sudo -n bash -c ") and "validate --json results.json --limit 100" in c[3][-1]
    assert c[4][-2] == f"{HOST}:bh dir/results.json"
    assert json.loads((bundle / "board_results.json").read_text())["benchmark"]["images_per_s"] == 1234.5
    assert "1,234.5 images/s" in out and "top-1 90.00 %" in out and "bit-exact" in out


def test_a_failed_copy_is_reported(capsys, tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, "exit 0", 'echo "scp: disk full" >&2; exit 1')
    rc, _, err = run(capsys, "--host", HOST, "--bundle", make_bundle(tmp_path / "b"))
    assert rc == 3 and "disk full" in err
