"""One certificate order against an ACME CA (RFC 8555 §7), blocking: account, order,
authorizations, finalization with a CSR, download. The `acme` library (certbot's) speaks the
protocol and signs every request (JWS through josepy); this module only drives it and answers
the challenges through the ChallengeBoard. Runs in the ACME thread, never on the reactor.
"""

from __future__ import annotations

import datetime
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mailsuite.acme.challenges import ChallengeBoard
from mailsuite.acme.files import AcmeFiles, private_pem
from mailsuite.config import AcmeConfig
from mailsuite.logtext import visible

USER_AGENT = "mailsuite"
NETWORK_TIMEOUT = 30  # seconds per request to the CA
ORDER_DEADLINE = 180  # seconds for the CA to validate and issue


class AcmeFailure(Exception):
    """Why no certificate came: one line, for the log and `cert status`."""


class TlsAlpn01Response(challenges.ChallengeResponse):
    """RFC 8737 §3: the client answers a tls-alpn-01 challenge with an empty object (the acme
    library no longer ships this challenge type)."""

    typ = "tls-alpn-01"

    def __bool__(self) -> bool:
        # The library sends an empty payload (a POST-as-GET, which only reads the challenge)
        # for a falsy object, and an object without fields is falsy; the answer is "{}".
        return True


def obtain_certificate(
    settings: AcmeConfig, files: AcmeFiles, hosts: list[str], board: ChallengeBoard
) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a new certificate for `hosts`; AcmeFailure otherwise."""
    try:
        return _obtain(settings, files, hosts, board)
    except AcmeFailure:
        raise
    except errors.ValidationError as e:
        raise AcmeFailure(_validation_failures(e)) from None
    except messages.Error as e:
        raise AcmeFailure(f"the CA refused: {visible(str(e), 400)}") from None
    except errors.TimeoutError:
        raise AcmeFailure(f"the CA did not finish within {ORDER_DEADLINE} s") from None
    except requests.RequestException as e:
        raise AcmeFailure(f"cannot reach the CA: {visible(str(e), 400)}") from None
    except errors.Error as e:
        raise AcmeFailure(f"ACME error: {visible(str(e) or type(e).__name__, 400)}") from None


def _obtain(settings, files, hosts, board) -> tuple[bytes, bytes]:
    account_key = jose.JWKEC(key=files.load_or_make_account_key())
    verify: Any = str(settings.ca_file) if settings.ca_file else True
    net = client.ClientNetwork(
        account_key,
        alg=jose.ES256,
        verify_ssl=verify,
        user_agent=USER_AGENT,
        timeout=NETWORK_TIMEOUT,
    )
    directory_url = settings.directory_url
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
    _use_account(acme, files, settings, directory_url)

    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = private_pem(cert_key)
    order = acme.new_order(crypto_util.make_csr(key_pem, hosts))
    posted: list[tuple[str | None, str | None]] = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # RFC 8555 §7.1.4: an authorization the account already holds
            name = authz.body.identifier.value
            challb = _pick_challenge(authz, settings.challenge, name)
            token = _token(challb)
            # RFC 8555 §8.1: key authorization = token "." base64url(JWK thumbprint).
            thumbprint = jose.b64encode(account_key.thumbprint(hash_function=hashes.SHA256))
            key_authorization = f"{token}.{thumbprint.decode()}"
            if settings.challenge == "http-01":
                board.post_http(token, key_authorization)
                posted.append((token, None))
                response = challb.chall.response(account_key)
            else:
                board.post_alpn(name, key_authorization)
                posted.append((None, name))
                response = TlsAlpn01Response()
            acme.answer_challenge(challb, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE)
        order = acme.poll_and_finalize(order, deadline)
    finally:
        for token, name in posted:
            board.withdraw(token=token, name=name)
    return order.fullchain_pem.encode("ascii"), key_pem


def _use_account(acme: client.ClientV2, files: AcmeFiles, settings: AcmeConfig, url: str) -> None:
    """RFC 8555 §7.3 and §7.3.1: newAccount with our key registers it, or, for a key the CA
    knows, answers with the existing account's URL; either way the URL is kept."""
    contact = {"email": settings.email} if settings.email else {}
    registration = messages.NewRegistration.from_data(terms_of_service_agreed=True, **contact)
    try:
        regr = acme.new_account(registration)
    except errors.ConflictError as e:
        regr = messages.RegistrationResource(uri=e.location, body=messages.Registration())
        acme.net.account = regr
    if files.account_url(url) != regr.uri:
        files.save_account_url(url, regr.uri)


def _challenge_type(challb: messages.ChallengeBody) -> str:
    chall = challb.chall
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", ""))
    return getattr(chall, "typ", "")


def _pick_challenge(authz, wanted: str, name: str) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        if _challenge_type(challb) == wanted:
            return challb
    offered = ", ".join(_challenge_type(c) for c in authz.body.challenges)
    raise AcmeFailure(f"the CA offers no {wanted} challenge for {name} (only: {offered})")


def _token(challb: messages.ChallengeBody) -> str:
    chall = challb.chall
    if isinstance(chall, challenges.UnrecognizedChallenge):
        token = chall.jobj.get("token")
        if not isinstance(token, str) or not token:
            raise AcmeFailure("the CA sent a challenge without a token")
        return token
    return chall.encode("token")


def _validation_failures(error: errors.ValidationError) -> str:
    """'validation of mail.example.org failed: <the CA's problem detail>' for each name."""
    parts = []
    for authzr in error.failed_authzrs:
        name = authzr.body.identifier.value
        details = [
            f"{c.error.typ.rsplit(':', 1)[-1]}: {c.error.detail}"
            for c in authzr.body.challenges
            if c.error is not None
        ]
        parts.append(f"validation of {name} failed: {'; '.join(details) or 'no detail'}")
    return visible("; ".join(parts) or "validation failed", 600)
