"""The body of a Ray test, run inside its own network namespace (see test_ray.py): python -m tests.cli.ray_driver CASE DIR.

Starts a two-node Ray cluster on 127.0.0.1 (`ray start --head --num-cpus 1`, then a second
`ray start --address`), runs the case against it, and stops every process of this namespace.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2", "--seed", "5"]
PORT = 6391
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "NO_COLOR": "1", "RAY_USAGE_STATS_ENABLED": "0",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def own_processes() -> list[int]:
    """Every process in this network namespace but this one: the cluster this driver started."""
    mine, pids = os.readlink("/proc/self/ns/net"), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/net") == mine:
                    pids.append(int(entry))
    return pids


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


@contextlib.contextmanager
def ray_cluster(port: int, head: list[str], *workers: list[str]) -> Iterator[str]:
    """Ray nodes on 127.0.0.1 (`ray start --head` with `head`, then `ray start --address` with each of `workers`);
    its address. After: every process of this network namespace killed, Ray's temporary folder removed."""
    temp = tempfile.mkdtemp(prefix="vray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    node = ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(150 * 2**20), "--disable-usage-stats"]
    try:
        subprocess.run([*RAY, "start", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp,
                        *node, *head], env=ENV, check=True, capture_output=True, timeout=180)
        for args in workers:
            subprocess.run([*RAY, "start", "--address", f"127.0.0.1:{port}", *node, *args], env=ENV, check=True,
                           capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in own_processes():
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)


def two_node_cluster(tmp: Path) -> contextlib.AbstractContextManager[str]:
    """A head and a worker node, one CPU each."""
    return ray_cluster(PORT, ["--num-cpus", "1"], ["--num-cpus", "1"])


def check_nodes(address: str) -> None:
    """Two live nodes, both on 127.0.0.1 (nothing bound outside the namespace's loopback)."""
    os.environ.update(RAY_AUTH_MODE="disabled")
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    nodes = [n for n in ray.nodes() if n["Alive"]]
    ray.shutdown()
    assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}, nodes


def vitcli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "vitcli", "embed", *map(str, args), *TINY], env=ENV,
                       capture_output=True, timeout=600)
    if check and r.returncode != 0:
        raise SystemExit(f"vitcli failed: {r.stderr.decode()[-3000:]}")
    return r


def rows(folder: Path) -> tuple[list, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])
    return t.drop(["embedding"]).to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))


def same_as_local(photos: Path, ray_out: Path, tmp: Path, shard: str) -> dict:
    """The Ray run's rows equal the local backend's: metadata exactly, embeddings bit for bit (the
    batches are the same: every photo fits to 224×224, no errors); the local run's JSON document."""
    local = tmp / "local"
    shutil.rmtree(local, ignore_errors=True)
    doc = json.loads(vitcli(photos, "--stage", "pooled", "--output-dir", local, "--format", "parquet",
                            "--shard-size", shard, "--batch-size", "2", "--json").stdout)
    meta_l, emb_l = rows(local)
    meta_r, emb_r = rows(ray_out)
    assert meta_r == meta_l, (meta_r[:2], meta_l[:2])
    assert np.array_equal(emb_r, emb_l), np.abs(emb_r - emb_l).max()
    return doc


def same_stats(ray: dict, local: dict) -> None:
    """The Ray run's `tensors` statistics are the local run's (to 1e-6; the same batches give the same bits)."""
    assert ray["tensors"].keys() == local["tensors"].keys() == {"pooled"}, (ray["tensors"], local["tensors"])
    r, lo = ray["tensors"]["pooled"], local["tensors"]["pooled"]
    assert r["shape"] == lo["shape"] and r["dtype"] == lo["dtype"], (r, lo)
    for key in ("min", "max", "mean", "std"):
        assert abs(r[key] - lo[key]) <= 1e-6, (key, r, lo)
    assert r == lo, (r, lo)


def case_both_nodes(photos: Path, tmp: Path) -> dict:
    """Two actors spread over the two nodes; rows equal local; --resume of a finished run does nothing."""
    with two_node_cluster(tmp) as address:
        check_nodes(address)
        out = tmp / "ray"
        args = [photos, "--stage", "pooled", "--output-dir", out, "--format", "parquet", "--shard-size", "4",
                "--batch-size", "2", "--backend", "ray", "--actors", "2", "--ray-address", address]
        doc = json.loads(vitcli(*args, "--json").stdout)
        assert len(doc["outputs"]["ray_nodes"]) == 2, doc["outputs"]
        same_stats(doc, same_as_local(photos, out, tmp, "4"))
        again = json.loads(vitcli(*args, "--resume", "--json").stdout)
        assert again["processed"] == 0 and again["outputs"]["resumed_shards"] == doc["outputs"]["shards"]
        args[4] = tmp / "unreachable"
        bad = vitcli(*args[:-2], "--ray-address", "127.0.0.1:1", check=False)
        err = bad.stderr.decode()
        assert bad.returncode == 1 and err.count("\n") == 1 and "--ray-address" in err and "127.0.0.1:1" in err, err
        assert not args[4].exists()
        return {"nodes": doc["outputs"]["ray_nodes"], "seconds": doc["seconds"]}


def case_worker_killed(photos: Path, tmp: Path) -> dict:
    """A model actor's process killed mid-run: the job finishes (Ray restarts it), or --resume does."""
    with two_node_cluster(tmp) as address:
        out = tmp / "ray"
        args = [photos, "--stage", "pooled", "--output-dir", out, "--format", "parquet", "--shard-size", "6",
                "--batch-size", "2", "--backend", "ray", "--actors", "2", "--ray-address", address, "-q"]
        proc = subprocess.Popen([sys.executable, "-m", "vitcli", "embed", *map(str, args), *TINY], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed, deadline = None, time.time() + 300
        while killed is None and time.time() < deadline and proc.poll() is None:
            workers = [p for p in own_processes() if "Embedder" in cmdline(p)]
            if workers:
                time.sleep(1.0)
                with contextlib.suppress(OSError):
                    os.kill(workers[0], signal.SIGKILL)
                    killed = workers[0]
            time.sleep(0.2)
        code = proc.wait(timeout=600)
        resumed = code != 0
        if resumed:
            vitcli(*args, "--resume")
        same_as_local(photos, out, tmp, "6")
        return {"killed": killed, "first_exit": code, "resumed": resumed}


if __name__ == "__main__":
    case, folder = sys.argv[1], Path(sys.argv[2])
    result = {"both_nodes": case_both_nodes, "worker_killed": case_worker_killed}[case](folder / "photos", folder)
    print(json.dumps(result))
