"""Delivery rate with a 50-rule Sieve script active for every recipient, against none.

Runs bench/smtp.py's load twice on fresh servers (`mailsuite serve` in a subprocess): once
with no script, once with a script of --rules rules (header, address, size, body-free tests,
fileinto into existing folders, as users write them) active for every user, placed with
ScriptStore before the server starts. Prints both rates and the slowdown.

    python bench/sieve.py --messages 2000 --concurrency 10 --size 2048 --rules 50 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import subprocess  # noqa: E402

from bench.smtp import (  # noqa: E402
    CONFIG,
    clean,
    delivered_rate,
    free_port,
    maildirs,
    make_users,
    run_load,
    serve,
)

FOLDERS = ["Lists", "Work", "Family", "Receipts", "Newsletters"]


def rules_script(rules: int) -> str:
    """A script users might write: list sorting, senders, subjects, sizes; few of the rules
    match a bench message (subject "bench N", from bench@example.test)."""
    lines = ['require ["fileinto", "imap4flags", "variables", "relational", "envelope"];']
    for i in range(rules):
        folder = FOLDERS[i % len(FOLDERS)]
        kind = i % 5
        if kind == 0:
            lines.append(f'if header :is "list-id" "<list{i}.lists.example.org>" {{')
        elif kind == 1:
            lines.append(f'if address :domain "from" "sender{i}.example.org" {{')
        elif kind == 2:
            lines.append(f'if header :contains "subject" ["invoice {i}", "receipt {i}"] {{')
        elif kind == 3:
            lines.append(f'if allof (size :over {100 + i}K, header :matches "to" "*team{i}*") {{')
        else:
            lines.append(f'if envelope :localpart :is "from" "person{i}" {{')
        lines.append(f'  fileinto "{folder}"; stop;\n}}')
    lines.append('if header :matches "subject" "bench *" { addflag "$Bench"; set "n" "${1}"; }')
    return "\n".join(lines) + "\n"


def place_scripts(workdir: Path, users: int, text: str) -> None:
    from mailsuite.config import load_config
    from mailsuite.services import Services
    from mailsuite.sieve.scripts import ScriptStore, account_folder

    services = Services.create(load_config(workdir / "mailsuite.toml"))
    for i in range(1, users + 1):
        address = f"user{i}@example.test"
        mbox = services.store.mailbox(address)
        for folder in FOLDERS:
            if not mbox.exists(folder):
                mbox.create_folder(folder)
        scripts = ScriptStore(account_folder(services.store.path_for(address)))
        scripts.put("rules", text)
        scripts.activate("rules")


def start(workdir: Path, users: int, script: str | None) -> tuple[subprocess.Popen, int]:
    """Users (and their scripts) first, then `mailsuite serve`."""
    port = free_port()
    conf = workdir / "mailsuite.toml"
    conf.write_text(CONFIG.format(port=port, log=workdir / "server.log", metrics=""))
    make_users(conf, users)
    if script is not None:
        place_scripts(workdir, users, script)
    return serve(conf, workdir, port), port


def one_run(args, script: str | None) -> float:
    """Delivered messages per second (every file in new/ or cur/ of any folder)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-sieve-"))
    proc = None
    try:
        proc, port = start(workdir, args.users, script)
        template = str(workdir / "data" / "mail" / "example.test" / "{user}")
        dirs = maildirs(template, args.users)
        for folder in FOLDERS:
            dirs += maildirs(template + "/." + folder, args.users)
        clean(dirs)
        start_time = time.perf_counter()
        _, errors = asyncio.run(
            run_load("127.0.0.1", port, args.messages, args.concurrency, args.size, args.users)
        )
        if errors:
            raise SystemExit(f"{errors} messages failed")
        return delivered_rate(dirs, args.messages, start_time)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048, help="payload bytes per message")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument(
        "--rounds", type=int, default=3, help="runs of each, alternating; the best one counts"
    )
    args = ap.parse_args()
    script = rules_script(args.rules)
    plain = filtered = 0.0
    for _ in range(args.rounds):
        # Alternating, and keeping each one's best, so that load from elsewhere on the
        # machine during one run does not decide the comparison.
        plain = max(plain, one_run(args, None))
        filtered = max(filtered, one_run(args, script))
    print("| script | messages | conc | size | best of | delivered msg/s |")
    print("|---|---|---|---|---|---|")
    common = f"{args.messages} | {args.concurrency} | {args.size} | {args.rounds}"
    print(f"| none | {common} | {plain:.1f} |")
    print(f"| {args.rules} rules | {common} | {filtered:.1f} |")
    print(f"\nslowdown with the script: {(1 - filtered / plain) * 100:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
