"""The `X-AlertFlow-Signature` header: `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

As Stripe's `Stripe-Signature`: the timestamp is signed with the body, so a receiver can refuse
old replays; while a rotated secret overlaps, one `v1=` per secret (the current one first), and a
receiver accepts the body if any of them matches the secret it holds. README.md, "Webhooks",
shows the receiver's side.
"""

import hashlib
import hmac

HEADER = "X-AlertFlow-Signature"


def signature(body: bytes, secrets: list[str], timestamp: int) -> str:
    """The header value for `body` sent at `timestamp`, signed with each of `secrets`."""
    signed = str(timestamp).encode() + b"." + body
    digests = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])
