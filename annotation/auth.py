"""Passwords and tokens. Passwords are hashed with scrypt (``hashlib``, salted, constant-time compared);
sessions, invite links and sign-in codes are random secrets of which only the SHA-256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

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


def server_secret(data: Path) -> bytes:
    """The key that signs media links: ``AVSTUDIO_SECRET``, else ``<data>/secret.key`` (made once, 0600)."""
    if os.environ.get("AVSTUDIO_SECRET"):
        return os.environ["AVSTUDIO_SECRET"].encode()
    path = Path(data) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        if not path.exists():
            tmp.replace(path)
        else:
            tmp.unlink()
    return path.read_bytes()


def sign(key: bytes, message: str) -> str:
    """A URL-safe HMAC-SHA256 of ``message``."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]


def signature_ok(key: bytes, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, message), signature)
