"""The benchmark's smoke test: the repository root on the path, the marker known."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config: pytest.Config) -> None:
    # Harmless if pyproject.toml registers it too.
    config.addinivalue_line(
        "markers", "bench: runs the benchmark pipeline (servers and load generators)"
    )
