"""Real headless Chromium for tests and benchmarks: the browser and the flags this machine needs.

Without the background-networking flags Chromium keeps trying to reach Google's hosts, which
this machine's closed network refuses.
"""

from tests.servers import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "artifacts"
