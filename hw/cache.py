"""The build caches' files (build/csim, build/rtlsim, build/yosys), safe when several processes
fill one cache at once (pytest-xdist workers, `make hls` beside `make sim`): every file is written
under a name private to its writer, then renamed to its final name, so a reader finds it whole or
not at all, and two writers of the same entry both end with the same complete file."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path


def private(path: Path, suffix: str = ".part") -> Path:
    """A name beside ``path`` that no other process or thread uses."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}{suffix}")


def write_text(path: Path, text: str) -> None:
    tmp = private(path)
    tmp.write_text(text)
    tmp.replace(path)


def copy(src: Path, dst: Path) -> None:
    tmp = private(dst)
    shutil.copy2(src, tmp)
    tmp.replace(dst)


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder to its final name; where another writer got there first, keep
    theirs (the same content) and drop ours."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
