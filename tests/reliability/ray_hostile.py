"""Ray that is not there, run inside its own network namespace (see test_hostile_ray.py):
python -m tests.reliability.ray_hostile CASE DIR. Prints one JSON object: each run's exit code
('timeout' past its cap), standard error and whether its output folder appeared.

listeners: --ray-address at loopback listeners that are not Ray (silent, HTTP/1, closing, garbage).
cluster:   a one-node Ray cluster without GPUs: --num-gpus 1 refused before anything is written, and a
           real run with -q prints nothing on standard error (no Ray INFO lines).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.cli.ray_driver import ENV, TINY, ray_cluster

CAP = 90  # seconds per run: far above a refusal, far below a hang


def listener(kind: str) -> int:
    """A loopback TCP listener that is not Ray; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    replies = {"silent": None, "http1": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "close": b"",
               "garbage": os.urandom(64)}

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            reply = replies[kind]
            if reply is None:
                threading.Thread(target=lambda c=conn: (c.recv(1 << 16), threading.Event().wait()), daemon=True).start()
                continue
            with contextlib.suppress(OSError):
                conn.sendall(reply)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def run(photos: Path, out: Path, *extra: str) -> dict:
    args = [sys.executable, "-m", "vitcli", "embed", str(photos), *TINY, "--output-dir", str(out), "--format",
            "parquet", "--shard-size", "2", "--backend", "ray", *extra]
    try:
        r = subprocess.run(args, env=ENV, capture_output=True, timeout=CAP)
        code, err = r.returncode, r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        code, err = "timeout", (e.stderr or b"").decode(errors="replace")
    return {"code": code, "stderr": err, "written": out.exists()}


def case_listeners(photos: Path, tmp: Path) -> dict:
    return {kind: run(photos, tmp / kind, "--ray-address", f"127.0.0.1:{listener(kind)}")
            for kind in ("silent", "http1", "close", "garbage")}


def case_cluster(photos: Path, tmp: Path) -> dict:
    with ray_cluster(6392, ["--num-cpus", "2", "--num-gpus", "0"]) as address:
        gpus = run(photos, tmp / "gpus", "--ray-address", address, "--num-gpus", "1")
        quiet = run(photos, tmp / "quiet", "--ray-address", address, "-q")
        return {"gpus": gpus, "quiet": quiet}


def main() -> None:
    case, tmp = sys.argv[1], Path(sys.argv[2])
    photos = tmp / "photos"
    result = {"listeners": case_listeners, "cluster": case_cluster}[case](photos, tmp)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
