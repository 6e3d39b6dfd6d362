"""The project's files as they are in the working tree, for copies to run from.

Servers under test (and the benchmark's) run from copies so that each has its
own ``.web/`` while other processes use the repository's. A copy holds what git
would commit: tracked files and new ones not ignored, as they are on disk.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def copy_project_files(root: Path, dest: Path) -> None:
    """Copy the tracked and untracked-not-ignored files of ``root`` into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = root / name
        if not source.is_file():  # tracked but deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
