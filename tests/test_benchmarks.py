"""benchmarks/run_all.py knows every script's quick arguments (a script missing from QUICK stops the run)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_all_lists_every_benchmark_script() -> None:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec and spec.loader
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    on_disk = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert run_all.scripts() == on_disk
