"""Run many vitcli command lines in one process, each under a time cap, and measure each one's peak memory.

    python -m tests.reliability.capped CASES.json RESULTS.json SECONDS

Like `tests.reliability.driver` (file descriptors 1 and 2 caught per case), plus: each case gets
SIGALRM after SECONDS (a read blocked on a FIFO is interrupted; the case reports code "timeout"),
and the kernel's peak-RSS mark is reset before each case (/proc/self/clear_refs) so its growth
over the resident size at its start is its own. Run it under RLIMIT_AS (`run_capped`) so a case
that would allocate without bound fails instead of taking the machine.
"""

import json
import os
import signal
import sys
import tempfile


class CaseTimeout(BaseException):
    """Raised by SIGALRM in the main thread (a BaseException, so no `except Exception` swallows it)."""


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout()


def run_one(args: list[str], seconds: float) -> dict:
    """Exit code ('timeout' when the cap fired), captured output and peak growth of `vitcli ARGS`."""
    from vitcli.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        sys.argv = ["vitcli", *args]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        signal.setitimer(signal.ITIMER_REAL, seconds)
        code: int | str
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except CaseTimeout:
            code = "timeout"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
        growth = _status("VmHWM") - base
        out.seek(0), err.seek(0)
        return {"code": code, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "growth": growth}


def main() -> None:
    cases_file, results_file, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    signal.signal(signal.SIGALRM, _alarm)
    import numpy  # noqa: F401 - the imports are no case's cost
    import torch  # noqa: F401

    import vitcli.cli  # noqa: F401

    with open(cases_file) as f:
        cases = json.load(f)
    results = [run_one(args, seconds) for args in cases]
    with open(results_file, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
