"""Peak memory growth of one vitcli command line, after a warm-up run (run as a subprocess).

    python -m tests.reliability.peak_rss WARMUP.json MEASURED.json

Both files hold an argument list. The warm-up run pays the one-off costs (library pages, thread
pools, allocator arenas); then the kernel's peak-RSS mark is reset (/proc/self/clear_refs) and
the measured run's peak growth over the resident size at that moment is printed as JSON:
{"codes": [warm-up exit, measured exit], "growth": bytes}.
"""

import json
import sys


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _run(args: list[str]) -> int:
    from vitcli.cli import main

    sys.argv = ["vitcli", *args]
    try:
        main()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0


def main() -> None:
    warmup, measured = (json.loads(open(p).read()) for p in sys.argv[1:3])
    codes = [_run(warmup)]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status("VmRSS")
    codes.append(_run(measured))
    sys.stdout.flush()
    sys.stderr.write(json.dumps({"codes": codes, "growth": _status("VmHWM") - base}) + "\n")


if __name__ == "__main__":
    main()
