"""Starts `inspect view` on a log folder (127.0.0.1, a free port), waits until it lists the
logs, fetches each one through the viewer's API (which parses it with Inspect's own model, as
the viewer shows it) and prints what the Rust test checks; then stops the viewer.

Usage: python view_check.py LOG_DIR
"""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

log_dir = sys.argv[1]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
viewer = subprocess.Popen(
    [sys.executable, "-m", "inspect_ai", "view", "--log-dir", log_dir, "--port", str(port)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
)
base = f"http://127.0.0.1:{port}/api"
try:
    listing = None
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{base}/logs", timeout=5) as r:
                listing = json.load(r)
            if listing["files"]:
                break
        except OSError:
            pass
        if viewer.poll() is not None:
            sys.exit("inspect view exited: " + viewer.stderr.read().decode())
        time.sleep(0.5)
    shown = []
    for f in listing["files"] if listing else []:
        path = urllib.parse.urlparse(f["name"]).path
        with urllib.request.urlopen(
            f"{base}/logs/{urllib.parse.quote(path, safe='')}", timeout=60
        ) as r:
            log = json.load(r)
        shown.append(
            {
                "task": f.get("task"),
                "status": log["status"],
                "samples": len(log.get("samples") or []),
                "scores": [e["name"] for e in log["results"]["scores"]],
            }
        )
    print(json.dumps({"listed": len(listing["files"]) if listing else 0, "shown": shown}))
finally:
    viewer.terminate()
    viewer.wait(timeout=30)
