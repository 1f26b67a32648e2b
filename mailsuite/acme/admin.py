"""`mailsuite cert status|renew`: the certificate the server serves, and a renewal on demand.

`cert renew` never touches port 80 or 443 itself: the running server holds them and answers the
CA's challenges. The command leaves a request file in data_dir/acme/ (the server's ACME thread
looks for it every second), then waits for the attempt counter in state.json to move and prints
that attempt's outcome. With no server running, the request stays and is carried out when
`mailsuite serve` starts.
"""

from __future__ import annotations

import sys
import time

from cryptography import x509

from mailsuite.acme.files import AcmeFiles, CertificateInfo, certificate_info, utc_text
from mailsuite.acme.schedule import renewal_time

EX_TEMPFAIL = 75
RENEW_POLL = 0.2


def add_cert_commands(subparsers) -> None:
    """Register `cert status` and `cert renew` on the main parser."""
    c = subparsers.add_parser("cert", help="the TLS certificate: status, renewal (ACME)")
    sub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("status", help="names, issuer, expiry and the last ACME attempt")
    s.set_defaults(func=cmd_cert_status)
    s = sub.add_parser("renew", help="ask the running server to renew the certificate now")
    s.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the outcome (default 300)",
    )
    s.set_defaults(func=cmd_cert_renew)


def _print_info(info: CertificateInfo | None, path, out) -> None:
    if info is None:
        print(f"certificate: none at {path}", file=out)
        return
    left = (info.not_after - time.time()) / 86400
    print(f"certificate: {path}", file=out)
    print(f"names: {', '.join(info.names) or '(none)'}", file=out)
    print(f"issuer: {info.issuer}", file=out)
    print(f"not after: {utc_text(info.not_after)} ({left:.1f} days left)", file=out)


def cmd_cert_status(ctx) -> int:
    config = ctx.config
    out = sys.stdout
    if config.acme is None:
        print("acme: off (no [acme] table); the certificate comes from [tls]", file=out)
        try:
            info = certificate_info(x509.load_pem_x509_certificate(config.tls.cert.read_bytes()))
        except (OSError, ValueError):
            info = None
        _print_info(info, config.tls.cert, out)
        return 0
    files = AcmeFiles(config.data_dir)
    print(f"acme: {config.acme.directory_url} ({config.acme.challenge})", file=out)
    info = files.certificate_info()
    _print_info(info, files.cert, out)
    if info is None:
        print("serving: a temporary self-signed certificate until the CA issues one", file=out)
    else:
        print(f"renewal due: {utc_text(renewal_time(info.not_before, info.not_after))}", file=out)
    state = files.load_state()
    if not state.last_attempt:
        print("last attempt: none yet", file=out)
    elif state.last_error:
        print(f"last attempt: {utc_text(state.last_attempt)}: failed: {state.last_error}", file=out)
        print(f"next attempt: {utc_text(state.next_attempt)}", file=out)
    else:
        print(f"last attempt: {utc_text(state.last_attempt)}: ok", file=out)
    print(f"server: {'running' if files.server_running() else 'not running'}", file=out)
    return 0


def cmd_cert_renew(ctx) -> int:
    config = ctx.config
    if config.acme is None:
        print("mailsuite: cert renew: ACME is off (no [acme] table in the config)", file=sys.stderr)
        return 1
    files = AcmeFiles(config.data_dir)
    before = files.load_state().attempts
    files.request_renewal()
    if not files.server_running():
        print(
            "mailsuite: no server is running: the renewal is asked for and happens when "
            "`mailsuite serve` starts",
            file=sys.stderr,
        )
        return EX_TEMPFAIL
    print("renewal asked for; waiting for the server's attempt ...", file=sys.stdout, flush=True)
    deadline = time.monotonic() + ctx.args.wait
    while time.monotonic() < deadline:
        state = files.load_state()
        if state.attempts > before:
            if state.last_error:
                print(f"mailsuite: cert renew failed: {state.last_error}", file=sys.stderr)
                return 1
            _print_info(files.certificate_info(), files.cert, sys.stdout)
            print("renewed: every TLS listener serves the new certificate", file=sys.stdout)
            return 0
        time.sleep(RENEW_POLL)
    print(
        f"mailsuite: cert renew: no outcome within {ctx.args.wait:g} s; see `mailsuite cert "
        "status` and the server's log",
        file=sys.stderr,
    )
    return EX_TEMPFAIL
