"""Drive a `vitcli view` page in Debian's headless chromium through playwright, offline.

`run_page(page, steps)` runs this file as a script inside a network namespace of its own
(`unshare -n`, loopback the only address), so nothing the browser tries can leave the machine.
The script opens the page from file://, waits for `window.vitcli.ready`, runs the steps and prints
one JSON object: each step's result, every request the page made, console and page errors.

Steps: {"eval": "JS expression"} (awaited), {"key": "ArrowRight"}, {"mouse": [x, y]} (move over
#picker, relative to it), {"click": [x, y]}, {"screenshot": "path.png"} (the full page).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install -y chromium)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed for the browser's network namespace"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode:
        return f"cannot make a network namespace (unshare -n needs root): {probe.stderr.decode().strip()}"
    return None


def run_page(page: str | Path, steps: list[dict], viewport: tuple[int, int] = (1400, 1000), timeout: int = 240) -> dict:
    """Open `page` in headless chromium inside `unshare -n`, run `steps`; the script's JSON report."""
    job = json.dumps({"page": str(Path(page).resolve()), "steps": steps, "viewport": list(viewport)})
    script = f"ip link set lo up; exec {sys.executable} {Path(__file__).resolve()}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], input=job.encode(), capture_output=True, timeout=timeout,
                          env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    if done.returncode:
        raise RuntimeError(f"browser script failed ({done.returncode}): {done.stderr.decode()[-3000:]}")
    return json.loads(done.stdout)


def _main() -> None:
    from playwright.sync_api import sync_playwright

    job = json.loads(sys.stdin.read())
    url = Path(job["page"]).as_uri()
    report: dict = {"requests": [], "console_errors": [], "page_errors": [], "results": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS, headless=True)
        page = browser.new_page(viewport=dict(zip(("width", "height"), job["viewport"])))
        page.on("request", lambda r: report["requests"].append(r.url))
        page.on("console", lambda m: m.type == "error" and report["console_errors"].append(m.text))
        page.on("pageerror", lambda e: report["page_errors"].append(str(e)))
        page.goto(url)
        report["ready"] = page.evaluate("window.vitcli.ready")
        report["ready_ms"] = page.evaluate("window.vitcli.readyMs")
        for step in job["steps"]:
            report["results"].append(_step(page, step))
        browser.close()
    json.dump(report, sys.stdout)


def _step(page, step: dict):
    """One step's result (JSON-able)."""
    if "eval" in step:
        return page.evaluate(step["eval"])
    if "key" in step:
        page.keyboard.press(step["key"])
        return page.evaluate("window.vitcli.state()")
    if "mouse" in step or "click" in step:
        box = page.locator("#picker").bounding_box()
        x, y = step.get("mouse") or step["click"]
        page.mouse.move(box["x"] + x, box["y"] + y)
        if "click" in step:
            page.mouse.click(box["x"] + x, box["y"] + y)
        return page.evaluate("window.vitcli.state()")
    if "screenshot" in step:
        page.screenshot(path=step["screenshot"], full_page=True)
        return step["screenshot"]
    raise ValueError(f"unknown step {step}")


if __name__ == "__main__":
    _main()
