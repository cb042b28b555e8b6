"""Provider credentials: encrypted at rest (JSON in, a Fernet token out, and back), masked in reprs.

Keys come from `settings.ALERTFLOW_ENCRYPTION_KEY`, a list of Fernet keys (the environment gives
it comma-separated). The first key encrypts; every key decrypts. To rotate: generate a key
(`Fernet.generate_key()`), list it first, keep the old ones after it, run `manage.py reencrypt_secrets`
(delivery/providers.py, `reencrypt_secrets`), then drop the old keys.

When the setting is empty, one key is derived from `SECRET_KEY` with HKDF so development works
with no configuration. Production should set its own keys: with the derived key, rotating
`SECRET_KEY` makes every stored provider secret unreadable (the tenants must enter them again).
"""

import base64
import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Changing this label changes the derived key: every secret stored under it becomes unreadable.
HKDF_INFO = b"alertflow provider secrets v1"


class SecretsUnreadable(Exception):
    """A stored ciphertext cannot be decrypted with any configured key.

    It means the keys changed (a key dropped from ALERTFLOW_ENCRYPTION_KEY too early, or SECRET_KEY
    rotated while the key was derived from it), not a provider failure: retrying will not help.
    """


def derived_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for deployments that set no key of their own."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def keys() -> tuple[str, ...]:
    """The configured keys, first one encrypting. Read at call time so tests can change them."""
    configured = settings.ALERTFLOW_ENCRYPTION_KEY
    if isinstance(configured, str):
        configured = [key.strip() for key in configured.split(",")]
    return tuple(key for key in configured if key)


def fernet() -> MultiFernet:
    return _fernet(keys(), settings.SECRET_KEY)


# Building Fernet objects is cheap but not free; the worker decrypts for every cache miss.
@functools.lru_cache(maxsize=8)
def _fernet(configured: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not configured:
        return MultiFernet([Fernet(derived_key(secret_key))])
    fernets = []
    for position, key in enumerate(configured, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Never echo the key itself: this message reaches logs.
            raise ImproperlyConfigured(
                f"ALERTFLOW_ENCRYPTION_KEY: key {position} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


def encrypt_json(value: dict) -> str:
    """Serialise `value` to JSON and encrypt it with the first key. Returns an ASCII token."""
    plain = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return fernet().encrypt(plain).decode("ascii")


def decrypt_json(token: str) -> dict:
    """Decrypt a token from `encrypt_json` with any configured key.

    Raises `SecretsUnreadable` when no key opens it (or it was tampered with).
    """
    try:
        plain = fernet().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise SecretsUnreadable(
            "Stored provider secrets cannot be decrypted with the configured keys: was a key removed "
            "from ALERTFLOW_ENCRYPTION_KEY, or SECRET_KEY rotated without one? Enter the secrets again."
        ) from None
    return json.loads(plain)


def rotate(token: str) -> str:
    """Re-encrypt a token under the first key (it must open with one of the keys)."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError):
        raise SecretsUnreadable("Stored provider secrets cannot be decrypted with the configured keys.") from None


# --- Secrets in memory ----------------------------------------------------------------------------


class RedactedConfig(dict):
    """A provider config whose repr shows `***` for its secret values.

    A config holds credentials in clear; a log line, an assertion message or a traceback's
    locals that format one must not print them.
    """

    def __init__(self, config: dict, secret_fields: tuple[str, ...] | frozenset[str]) -> None:
        super().__init__(config)
        self.secret_fields = frozenset(secret_fields)

    def __repr__(self) -> str:
        shown = {key: "***" if key in self.secret_fields and value else value for key, value in self.items()}
        return repr(shown)

    __str__ = __repr__

    def secret_values(self) -> list[str]:
        """Every string held under a secret field (a service account's nested ones included)."""
        return strings_in([self.get(field) for field in self.secret_fields])


def mask_secrets(text: str, config: dict) -> str:
    """`text` with every secret value of `config` (a `RedactedConfig`) replaced by `***`."""
    secrets = config.secret_values() if isinstance(config, RedactedConfig) else []
    # Longest first, so a secret that contains another is masked whole. Very short values (a
    # one-letter test password) would mask ordinary words and protect nothing.
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def strings_in(value: Any) -> list[str]:
    """The non-empty strings in `value`, however nested in dicts and lists."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [text for item in value for text in strings_in(item)]
    return []
