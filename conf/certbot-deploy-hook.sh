#!/bin/sh
# certbot deploy hook for mailsuite: install the renewed certificate where the (unprivileged)
# server can read it, then make the server reload it (SIGHUP through `systemctl reload`).
#
# Only for certificates from certbot instead of the built-in ACME client ([acme] in the config).
# Install it first (certbot runs it as soon as it has the first certificate), after the
# mailsuite user exists (docs/production.md §3, "Alternative: certificates from certbot"):
#           install -m 0755 conf/certbot-deploy-hook.sh /etc/mailsuite/certbot-deploy-hook.sh
# Then use: certbot certonly ... --deploy-hook /etc/mailsuite/certbot-deploy-hook.sh
#           (certbot remembers it for renewals), or copy it into
#           /etc/letsencrypt/renewal-hooks/deploy/ to run after every certificate's renewal.
#
# certbot runs it as root with RENEWED_LINEAGE=/etc/letsencrypt/live/<name>.
# The config's [tls] cert/key must name $MAILSUITE_TLS_DIR/fullchain.pem and privkey.pem.
#
# Environment (defaults in brackets):
#   MAILSUITE_TLS_DIR  where the server reads its certificate [/etc/mailsuite/tls]
#   MAILSUITE_GROUP    group that may read the files (the server's) [mailsuite]
#   MAILSUITE_RELOAD   command that makes the server re-read them [systemctl reload mailsuite]
set -eu

: "${RENEWED_LINEAGE:?not run by certbot: RENEWED_LINEAGE is not set}"
TLS_DIR=${MAILSUITE_TLS_DIR:-/etc/mailsuite/tls}
GROUP=${MAILSUITE_GROUP:-mailsuite}
RELOAD=${MAILSUITE_RELOAD:-systemctl reload mailsuite}

for f in fullchain.pem privkey.pem; do
    if [ ! -r "$RENEWED_LINEAGE/$f" ]; then
        echo "mailsuite deploy hook: $RENEWED_LINEAGE/$f is missing or unreadable" >&2
        exit 1
    fi
done

umask 077
mkdir -p "$TLS_DIR"

# Each file goes through a temporary name and a rename in the same directory, so the server
# never reads half a file; the key is installed before the chain that needs it.
install_file() {
    tmp=$(mktemp "$TLS_DIR/.$2.XXXXXX")
    cat "$1" > "$tmp"
    if [ "$(id -u)" = 0 ]; then
        chown "root:$GROUP" "$tmp"
    fi
    chmod 0640 "$tmp"
    mv -f "$tmp" "$TLS_DIR/$2"
}
install_file "$RENEWED_LINEAGE/privkey.pem" privkey.pem
install_file "$RENEWED_LINEAGE/fullchain.pem" fullchain.pem

# The server re-reads the pair on SIGHUP for new connections; a pair it cannot use is logged
# and the old one kept. A server that is not running will read the new files when it starts.
if ! sh -c "$RELOAD"; then
    echo "mailsuite deploy hook: certificate installed in $TLS_DIR; reload failed ($RELOAD)" >&2
fi
echo "mailsuite deploy hook: installed $(basename "$RENEWED_LINEAGE") certificate into $TLS_DIR"
