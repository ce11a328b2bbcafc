"""`make deploy BOARD=pynq-z2 PYNQ_HOST=user@host`: run the deploy bundle on a PYNQ board.

    python -m flows.deploy --board pynq-z2 --host xilinx@192.168.2.99

1. the bundle ``build/<model>/deploy_<board>/`` (``make bitstream``) must hold the bitstream
   pair and the driver; otherwise exit 2 before anything is contacted;
2. ``ssh -o BatchMode=yes -o ConnectTimeout=<s> <host> true``: an unreachable host, a refused
   connection or a login that needs a password fails here, within ``--connect-timeout``
   seconds, with ssh's reason and what to check (exit 3);
3. ``scp -r`` of the bundle to ``<remote-dir>`` on the board (replacing an earlier copy);
4. on the board: ``python3 -m bhvit_driver validate --json results.json`` in the bundle
   (as root through ``sudo -n`` in PYNQ's virtual environment where the image has one:
   the overlay needs /dev/mem; ``--no-sudo`` when logging in as root); the sample images must
   give the golden logits, then throughput / latency and accuracy on the bundled test set;
5. ``results.json`` comes back as ``board_results.json`` in the bundle folder; the accuracy and
   images/s are printed.

Exit codes: 0 validated on the board, 1 the validation failed there (mismatch, error), 2 bad
input (no host, no bundle, no bitstream), 3 the host cannot be reached or a copy failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_REMOTE_DIR = "bhvit_deploy"
PYNQ_VENV = "/etc/profile.d/pynq_venv.sh"      # PYNQ images from 2.7 on: pynq lives in a virtual environment


class DeployError(RuntimeError):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def ssh_options(timeout: int) -> list:
    return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4"]


def check_bundle(bundle: Path) -> dict:
    params_file = bundle / "bhvit_driver" / "params.json"
    if not params_file.exists():
        raise DeployError(f"no deploy bundle at {bundle} (bhvit_driver/params.json is missing): run "
                          "`make bitstream BOARD=<board>` first", 2)
    params = json.loads(params_file.read_text())
    missing = [f for f in (params["bitfile"], Path(params["bitfile"]).with_suffix(".hwh").name)
               if not (bundle / f).exists()]
    if missing:
        raise DeployError(f"the bundle {bundle} has no {' / '.join(missing)} (written with --bundle-only?): build the "
                          "bitstream with `make bitstream` where Vivado is installed, or add one with "
                          "BITSTREAM_ARGS=\"--bundle-only --bit X.bit --hwh X.hwh\"", 2)
    return params


def remote_command(remote_dir: str, sudo: bool, driver_args: list) -> str:
    """The shell command run on the board (ssh starts it in the login's home; sudo keeps the directory)."""
    inner = (f"if [ -f {PYNQ_VENV} ]; then . {PYNQ_VENV}; fi; "
             f"python3 -m bhvit_driver validate --json results.json {' '.join(shlex.quote(x) for x in driver_args)}")
    return f"cd {shlex.quote(remote_dir)} && {'sudo -n ' if sudo else ''}bash -c {shlex.quote(inner.strip())}"


def run(cmd, timeout=None, log=print, capture=True):
    log("[deploy] " + " ".join(shlex.quote(c) for c in cmd))
    try:
        return subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    except FileNotFoundError:
        raise DeployError(f"{cmd[0]} is not installed here (apt-get install openssh-client)", 3) from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{cmd[0]} did not finish within {timeout} s", 3) from None


def deploy(host: str, bundle: Path, remote_dir: str, timeout: int, sudo: bool, driver_args: list,
           run_timeout: int, log=print) -> dict:
    params = check_bundle(bundle)
    opts = ssh_options(timeout)
    r = run(["ssh", *opts, host, "true"], timeout=timeout + 15, log=log)
    if r.returncode != 0:
        raise DeployError(f"cannot reach {host} over ssh: {r.stderr.strip() or f'ssh exited with {r.returncode}'}. "
                          "Check PYNQ_HOST (user@address), that the board is powered and on this network, and that "
                          "key-based login works (ssh-copy-id " + host + ").", 3)
    r = run(["ssh", *opts, host, f"rm -rf {shlex.quote(remote_dir)}"], timeout=timeout + 60, log=log)
    if r.returncode != 0:
        raise DeployError(f"could not clear {remote_dir} on {host}: {r.stderr.strip()}", 3)
    r = run(["scp", "-r", "-q", *opts, str(bundle), f"{host}:{remote_dir}"], timeout=timeout + 600, log=log)
    if r.returncode != 0:
        raise DeployError(f"copying {bundle} to {host}:{remote_dir} failed: {r.stderr.strip()}", 3)
    r = run(["ssh", *opts, host, remote_command(remote_dir, sudo, driver_args)], timeout=run_timeout, log=log,
            capture=False)
    validated = r.returncode
    with tempfile.TemporaryDirectory() as tmp:
        got = Path(tmp) / "results.json"
        c = run(["scp", "-q", *opts, f"{host}:{remote_dir}/results.json", str(got)], timeout=timeout + 60, log=log)
        if c.returncode != 0 or not got.exists():
            hint = (" (sudo -n needs passwordless sudo: log in as root, or use --no-sudo where the user may open "
                    "/dev/mem)" if sudo else "")
            raise DeployError(f"the validation on {host} left no results.json (exit {validated}){hint}", 1)
        res = json.loads(got.read_text())
        dest = bundle / "board_results.json"
        tmp_dest = dest.with_suffix(".json.part")
        tmp_dest.write_text(json.dumps(res, indent=2))
        os.replace(tmp_dest, dest)
    res["_exit"] = validated
    res["_file"] = str(dest)
    res["_model"] = params["model"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="pynq-z2")
    p.add_argument("--host", default=os.environ.get("PYNQ_HOST", ""), help="user@address of the board (PYNQ_HOST)")
    p.add_argument("--model", default="bhvit_pynq_fmnist", help="the model whose bundle to deploy")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a model configuration file (its model is named after the file) instead of --model")
    p.add_argument("--bundle", default=None, help="default build/<model>/deploy_<board>")
    p.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR, help="folder on the board, under the login's home")
    p.add_argument("--connect-timeout", type=int, default=10, help="seconds ssh waits for the board (default 10)")
    p.add_argument("--run-timeout", type=int, default=1800, help="seconds the validation may take on the board")
    p.add_argument("--no-sudo", action="store_true", help="run the driver without sudo (login as root)")
    p.add_argument("--driver-args", default="", help="more arguments for `python3 -m bhvit_driver validate`")
    a = p.parse_args(argv)
    if a.config:
        a.model = Path(a.config).stem
    from flows.boards import UnknownBoardError, get_board
    try:
        board = get_board(a.board)
    except UnknownBoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not a.host.strip():
        print("error: no board to deploy to: set PYNQ_HOST=user@address (make deploy PYNQ_HOST=xilinx@192.168.2.99)",
              file=sys.stderr)
        return 2
    bundle = Path(a.bundle or f"build/{a.model}/deploy_{board.name}")
    try:
        res = deploy(a.host.strip(), bundle, a.remote_dir, a.connect_timeout, not a.no_sudo,
                     shlex.split(a.driver_args), a.run_timeout)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    s, b, acc = res.get("sample", {}), res.get("benchmark", {}), res.get("accuracy")
    print(f"[deploy] {a.host}: sample {'bit-exact' if s.get('bit_exact') else 'MISMATCH'}"
          + (f"; {b['images_per_s']:,.1f} images/s (batch {b['batch_size']}), one image "
             f"{1e3 * b['latency_one_image_s']:.3f} ms" if b else "")
          + (f"; top-1 {100 * acc['accuracy']:.2f} % on {acc['images']} images" if acc else "")
          + f" -> {res['_file']}")
    return 0 if res["_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
