"""A throwaway redis-server for one test session: a free port, no persistence.

Where the Debian package ``redis-server`` is missing the Redis tests skip with a
message naming it; under CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

MISSING = "redis-server not found: install the Debian package `redis-server`"


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process; ``restart`` keeps the port and loses the data."""

    def __init__(
        self,
        workdir: Path,
        password: str = "",
        tls_dir: Path | None = None,
        binary: str | None = None,
    ):
        # Outside pytest (the benchmark) the caller finds the binary itself.
        self.binary = binary or require_redis_server()
        self.workdir, self.password, self.tls_dir = workdir, password, tls_dir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls_dir is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        ca = self.tls_dir / "ca.pem"
        return f"rediss://{auth}localhost:{self.port}/0?ssl_ca_certs={ca}"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls_dir is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-auth-clients",
                "no",
            ]
            for option, name in [
                ("cert", "cert.pem"),
                ("key", "key.pem"),
                ("ca-cert", "ca.pem"),
            ]:
                args += [f"--tls-{option}-file", str(self.tls_dir / name)]
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start listening within 10 s")


def write_tls_files(directory: Path) -> Path:
    """A throwaway CA and a certificate for localhost, as PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    return directory
