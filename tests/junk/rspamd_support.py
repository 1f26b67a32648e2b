"""Debian's real rspamd (and redis-server for its Bayes statistics, which rspamd 3.4 keeps
only in redis) on loopback ports, with a minimal local configuration: test subjects that
force a verdict, no greylisting, DNS through the tests' stub server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

RSPAMD = shutil.which("rspamd")
REDIS = shutil.which("redis-server")

# Subjects that make rspamd's verdict certain (multimap rules below).
REJECT_SUBJECT = "RSPAMD-TEST-REJECT"
JUNK_SUBJECT = "RSPAMD-TEST-JUNK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(normal: int, controller: int, redis: int, dns: str) -> dict[str, str]:
    return {
        "override.d/worker-normal.inc": f'bind_socket = "127.0.0.1:{normal}";\ncount = 1;\n',
        "override.d/worker-controller.inc": (
            f'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\nsecure_ip = "127.0.0.1";\n'
        ),
        "override.d/worker-proxy.inc": "enabled = false;\n",
        "override.d/logging.inc": 'type = "console";\nlevel = "error";\n',
        "override.d/actions.conf": "reject = 15;\nadd_header = 6;\ngreylist = null;\n",
        "local.d/greylist.conf": "enabled = false;\n",
        "local.d/redis.conf": f'servers = "127.0.0.1:{redis}";\n',
        "local.d/options.inc": f'dns {{ nameserver = ["{dns}"]; timeout = 0.5s; retransmits = 1; }}\n',
        "local.d/multimap.conf": (
            'RSPAMD_TEST_REJECT {\n  type = "header";\n  header = "Subject";\n'
            '  regexp = true;\n  map = "${LOCAL_CONFDIR}/maps/reject.map";\n  score = 100.0;\n}\n'
            'RSPAMD_TEST_JUNK {\n  type = "header";\n  header = "Subject";\n'
            '  regexp = true;\n  map = "${LOCAL_CONFDIR}/maps/junk.map";\n  score = 8.0;\n}\n'
        ),
        "maps/reject.map": f"/{REJECT_SUBJECT}/\n",
        "maps/junk.map": f"/{JUNK_SUBJECT}/\n",
    }


def _as_root() -> list[str]:
    """rspamd refuses to run as root unless told which user to be and that it may."""
    return ["-i", "-u", "root", "-g", "root"] if os.getuid() == 0 else []


class Rspamd:
    def __init__(self, root: Path, dns: str):
        self.root = root
        self.normal, self.controller, self.redis_port = free_port(), free_port(), free_port()
        conf = root / "conf"
        for name, text in _files(self.normal, self.controller, self.redis_port, dns).items():
            path = conf / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for sub in ("run", "db", "log"):
            (root / sub).mkdir(exist_ok=True)
        self.redis = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.log = open(root / "log" / "rspamd.out", "wb")
        self.proc = subprocess.Popen(
            [
                RSPAMD,
                "-f",
                "-i",
                "-u",
                "root",
                "-g",
                "root",
                "-c",
                "/etc/rspamd/rspamd.conf",
                f"--var=LOCAL_CONFDIR={conf}",
                f"--var=RUNDIR={root / 'run'}",
                f"--var=DBDIR={root / 'db'}",
                f"--var=LOGDIR={root / 'log'}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.normal}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rspamd exited: {(self.root / 'log' / 'rspamd.out').read_text()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as r:
                    if r.read().strip() == b"pong":
                        with urllib.request.urlopen(self.controller_url + "/ping", timeout=2):
                            return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("rspamd did not start")

    def learned(self) -> int:
        with urllib.request.urlopen(self.controller_url + "/stat", timeout=5) as r:
            return int(json.load(r).get("learned", 0))

    def stop(self) -> None:
        for proc in (self.proc, self.redis):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
