"""Passwords and tokens. Passwords are hashed with scrypt (``hashlib``, salted, constant-time compared);
sessions, invite links and sign-in codes are random secrets of which only the SHA-256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1  # scrypt cost: about 50 ms and 16 MB per check


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password`` (hex salt and hash)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (False for a missing or odd one)."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def new_token() -> str:
    """A fresh URL-safe secret (256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()
