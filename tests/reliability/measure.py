"""Run one command and write its exit code and peak RSS (wait4's ru_maxrss) as JSON.

    python -m tests.reliability.measure OUT.json [--address-space BYTES] -- COMMAND...

Run from a fresh small interpreter, not forked straight from pytest: Linux carries the RSS of the
process that forked a child into the child's ru_maxrss (the forking process's high-water mark is
copied and survives exec), so a child of a large pytest would report pytest's size. Standard
streams are the command's own; `--address-space` sets RLIMIT_AS in the command before it starts.
"""

import json
import os
import resource
import subprocess
import sys


def main() -> None:
    out, rest = sys.argv[1], sys.argv[2:]
    limit = None
    if rest[0] == "--address-space":
        limit, rest = int(rest[1]), rest[2:]
    command = rest[1:] if rest[0] == "--" else rest

    def cap() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.Popen(command, preexec_fn=cap if limit else None)
    _, status, usage = os.wait4(proc.pid, 0)
    with open(out, "w") as f:
        json.dump({"code": os.waitstatus_to_exitcode(status), "peak": usage.ru_maxrss * 1024}, f)


if __name__ == "__main__":
    main()
