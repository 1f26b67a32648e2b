"""DKIM signing and verification cost by message size (ed25519 and RSA-2048).

    python bench/trust_dkim.py [SIZE_KIB ...] [--repeat N]

Prints one row per size: milliseconds per sign and per verify, for each key type.  The relay
signs in a worker thread and inbound verification runs in one, so these are thread-pool costs,
not reactor stalls.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import dkim as dkimpy

from mailsuite.config import Config
from mailsuite.trust import dkim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", type=int, default=[4, 64, 1024, 10240])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = dataclasses.replace(Config(), data_dir=Path(tempfile.mkdtemp()))
    keys = {t: dkim.generate_key(cfg, "example.test", t, t) for t in ("ed25519", "rsa")}
    records = {f"{k.dns_name}.": k.dns_value.encode() for k in keys.values()}

    def dnsfunc(name, timeout=5):
        return records.get(name.decode())

    print(f"{'size KiB':>9} {'type':>8} {'sign ms':>9} {'verify ms':>10}")
    for size in args.sizes:
        line = b"x" * 76 + b"\r\n"
        body = line * (size * 1024 // len(line) + 1)
        msg = b"From: a@example.test\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" + body
        for t, key in keys.items():
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                signed = dkim.sign_message(msg, [key])
            t1 = time.perf_counter()
            for _ in range(args.repeat):
                assert dkimpy.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc)
            t2 = time.perf_counter()
            sign_ms = (t1 - t0) / args.repeat * 1000
            verify_ms = (t2 - t1) / args.repeat * 1000
            print(f"{size:>9} {t:>8} {sign_ms:>9.2f} {verify_ms:>10.2f}")


if __name__ == "__main__":
    main()
