"""Run a command in a network namespace of its own, its loopback up and empty, so that a test
can start the server on the documented default ports (2525, 2143, ...) whatever else runs on
this machine. `python tests/private_network.py CMD...` is the inside half: it brings `lo` up and
execs CMD; `prefix()` is the outside half: the argv to put before it, or None where namespaces
cannot be made (no `unshare`, or unprivileged user namespaces disabled)."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def prefix() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    flags = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    argv = [unshare, *flags, sys.executable, str(Path(__file__).resolve())]
    probe = subprocess.run([*argv, "true"], capture_output=True, timeout=30)
    return argv if probe.returncode == 0 else None


if __name__ == "__main__":
    loopback_up()
    os.execvp(sys.argv[1], sys.argv[1:])
