"""SASL for SMTP, POP3 and IMAP: the mechanisms (`mechanisms.py`) and the one dialogue that
runs them (`dialogue.py`); each protocol keeps only its wire replies."""

from mailsuite.sasl.dialogue import (
    BadEncoding,
    BadResponse,
    Cancelled,
    EncryptionRequired,
    IdentityRefused,
    Outcome,
    Pending,
    Ready,
    SaslDialogue,
    SendChallenge,
    UnknownMechanism,
    Verdict,
    decode_response,
)
from mailsuite.sasl.mechanisms import MECHANISMS, Credentials, SaslError, mechanism

__all__ = [
    "MECHANISMS",
    "BadEncoding",
    "BadResponse",
    "Cancelled",
    "Credentials",
    "EncryptionRequired",
    "IdentityRefused",
    "Outcome",
    "Pending",
    "Ready",
    "SaslDialogue",
    "SaslError",
    "SendChallenge",
    "UnknownMechanism",
    "Verdict",
    "decode_response",
    "mechanism",
]
