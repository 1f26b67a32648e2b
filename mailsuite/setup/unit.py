"""The systemd unit `mailsuite setup` installs (and conf/mailsuite.service, the same unit with
the default paths, for installing by hand).

The server runs as its own user from the start, with CAP_NET_BIND_SERVICE as its only
capability (for ports below 1024), on a read-only system where only the data and log folders
are writable; everything else systemd can take away is taken away. Checked with
`systemd-analyze verify` by the tests where systemd is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIT = """\
# systemd unit for mailsuite, written by `mailsuite setup` (conf/mailsuite.service is the same
# with the default paths). Installed as /etc/systemd/system/mailsuite.service, then
#   systemctl daemon-reload && systemctl enable --now mailsuite
# See docs/production.md. `systemctl reload mailsuite` sends SIGHUP: the TLS certificate is
# re-read for new connections.

[Unit]
Description=mailsuite mail server (SMTP, submission, IMAP, POP3, autoconfig)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
Environment=MAILSUITE_CONFIG={config}
# A broken config fails the start here, with one line naming the key, in `journalctl -u mailsuite`.
ExecStartPre={exe} check
ExecStart={exe} serve
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Let in-flight SMTP transactions and index saves finish.
TimeoutStopSec=30s
KillSignal=SIGTERM

# Ports below 1024 without root: the one capability, nothing gained through exec.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
UMask=0027

# The data folder (mail, accounts, queue, keys, certificates) and the log folder are the only
# writable places; /var/lib/mailsuite and /var/log/mailsuite are made at start if missing.
StateDirectory=mailsuite
StateDirectoryMode=0750
LogsDirectory=mailsuite
LogsDirectoryMode=0750
ReadWritePaths={data_dir} {log_dir}

# Everything else read-only, hidden or refused.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

# One descriptor per connection and per open file: leave room for many IMAP clients.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class UnitPaths:
    exe: str = "/usr/local/bin/mailsuite"
    config: str = "/etc/mailsuite/mailsuite.toml"
    data_dir: str = "/var/lib/mailsuite"
    log_dir: str = "/var/log/mailsuite"
    user: str = "mailsuite"


def unit_text(paths: UnitPaths) -> str:
    return UNIT.format(
        exe=paths.exe,
        config=paths.config,
        data_dir=paths.data_dir,
        log_dir=paths.log_dir,
        user=paths.user,
    )
