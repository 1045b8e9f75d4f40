"""SCRAM credentials (RFC 5802): what a broker stores instead of a password.

`scram_credential(password)` returns Kafka's stored form: a random salt, the
iteration count (4096, as Kafka's minimum for SCRAM-SHA-256), StoredKey =
H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword,
"Server Key"), base64-encoded so it travels as JSON. Neither key lets anyone
log in without the password: SCRAM verifies a proof against StoredKey, and
PLAIN recomputes StoredKey from the password it receives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

ITERATIONS = 4096
HASH = "sha256"
# The principal brokers use among themselves (a super user). Users cannot take this name.
BROKER_USER = "broker"
_USERNAME = re.compile(r"^[A-Za-z0-9._@+\-]{1,128}$")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(HASH, password.encode("utf-8"), salt, iterations)


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, HASH).digest()


def h(data: bytes) -> bytes:
    return hashlib.new(HASH, data).digest()


def keys_from_salted(salted: bytes) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey) for a SaltedPassword."""
    client_key = hmac_sha256(salted, b"Client Key")
    return client_key, h(client_key), hmac_sha256(salted, b"Server Key")


def scram_credential(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict:
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be a non-empty string")
    salt = os.urandom(24) if salt is None else salt
    _, stored_key, server_key = keys_from_salted(salted_password(password, salt, iterations))
    return {
        "salt": b64(salt),
        "iterations": iterations,
        "stored_key": b64(stored_key),
        "server_key": b64(server_key),
    }


def validate_username(name: str) -> str:
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise ValueError(f"user name {name!r} must be 1-128 characters from A-Z a-z 0-9 . _ @ + -")
    if name == BROKER_USER:
        raise ValueError(f"user name {BROKER_USER!r} is reserved for the brokers' own connections")
    return name


def build_credentials(users: dict[str, str]) -> dict[str, dict]:
    """{"alice": "secret"} -> {"alice": <salted SCRAM credential>} (plaintext is not kept)."""
    if not isinstance(users, dict):
        raise ValueError('users must be a dict of user name to password, e.g. {"alice": "secret"}')
    return {validate_username(name): scram_credential(password) for name, password in users.items()}


def verify_password(credential: dict, password: str) -> bool:
    """PLAIN: does `password` produce this credential's StoredKey? (constant-time compare)"""
    salt = unb64(credential["salt"])
    _, stored_key, _ = keys_from_salted(salted_password(password, salt, int(credential["iterations"])))
    return hmac.compare_digest(stored_key, unb64(credential["stored_key"]))
