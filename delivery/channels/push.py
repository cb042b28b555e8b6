"""Push providers: FCM (firebase-admin), APNs (HTTP/2, token auth), Web Push (pywebpush), a sink.

`Outgoing.to` is the device's token (for Web Push: the browser's subscription JSON) and
`Outgoing.content` is `{title, body, data, image}`. A dead token is reported with
`deactivate_device=True`, and only a dead token: a quota or credentials problem says nothing
about the device.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
import warnings
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import firebase_admin
import httpx
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from firebase_admin import credentials, messaging
from firebase_admin import exceptions as fcm_errors
from google.auth import exceptions as google_auth_errors
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from alertflow import input_limits, outbound

from .base import (
    Code,
    Outgoing,
    Provider,
    ProviderError,
    Sent,
    append_json_line,
    http_status_error,
    json_body,
    optional_bool,
    optional_int,
    optional_timeout,
    optional_url,
    parse_retry_after,
    reject_unknown,
    require_str,
    sink_path,
    summarize_http_error,
)

logger = logging.getLogger(__name__)

# firebase-admin 7.x deprecates Message.token for Message.fid (a Firebase installation ID). Our
# devices register the FCM registration token their app got from getToken(), which the FCM v1
# API still takes as `message.token`; an fid is a different identifier, so keep sending tokens.
warnings.filterwarnings("ignore", message="Message.token is deprecated", category=DeprecationWarning)


class PushProvider(Provider):
    channel = "push"

    @staticmethod
    def field(out: Outgoing, key: str) -> str:
        return str(out.content.get(key) or "")

    @staticmethod
    def data(out: Outgoing) -> dict:
        data = out.content.get("data") or {}
        return dict(data) if isinstance(data, dict) else {}


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


# --- FCM ------------------------------------------------------------------------------------------

_fcm_apps: dict[str, firebase_admin.App] = {}
_fcm_lock = threading.Lock()


def _fcm_app(service_account: dict, base_url: str, timeout: float, guarded: bool) -> firebase_admin.App:
    """The firebase_admin App for one service account, created once per process.

    firebase_admin keeps apps in a process-wide registry by name; the name is a hash of
    everything the app is built from, so a changed config gets a new app and an unchanged one
    keeps its OAuth token (valid an hour) across batches.
    """
    digest = hashlib.sha256(
        json.dumps([service_account, base_url, timeout, guarded], sort_keys=True).encode()
    ).hexdigest()
    name = f"alertflow-fcm-{digest[:32]}"
    with _fcm_lock:
        app = _fcm_apps.get(name)
        if app is None:
            certificate = credentials.Certificate(service_account)
            if base_url:
                # google-auth looks up the service account's Regional Access Boundary at
                # iamcredentials.googleapis.com after each token refresh (in a background thread,
                # google/auth/_regional_access_boundary_utils.py). With FCM aimed at a local fake
                # that is the one call still leaving for the internet: skip it the way google-auth
                # itself skips non-Google universes.
                certificate.get_credential()._is_regional_access_boundary_lookup_required = lambda: False
            app = firebase_admin.initialize_app(
                certificate,
                {"projectId": service_account["project_id"], "httpTimeout": timeout},
                name=name,
            )
            _prepare_messaging(app, base_url, guarded)
            _fcm_apps[name] = app
    return app


def _prepare_messaging(app: firebase_admin.App, base_url: str, guarded: bool) -> None:
    """Aim the app's messaging service at `base_url`, turn its own retries off, and guard the
    OAuth token request when the service account is a tenant's.

    firebase-admin has no option for the FCM endpoint: `_MessagingService.__init__` builds
    `_fcm_url` from the constant `https://fcm.googleapis.com/v1/projects/{project}/messages:send`
    (firebase_admin/messaging.py). The service is created once per app and cached on it, so we
    create it now and set that one attribute. It also mounts urllib3 retries (4 retries of
    500/503 with backoff, up to ~7 s inside one send(), firebase_admin/_http_client.py); retries
    are the pipeline's decision (STYLE habit 3), so its adapters are replaced by plain ones.

    The token request goes to the service account's `token_uri`, which the tenant wrote: it
    leaves through google-auth's own session (`AuthorizedSession._auth_request_session`,
    google/auth/transport/requests.py), which gets the outbound guard's adapter.
    """
    service = messaging._get_messaging_service(app)
    session = getattr(getattr(service, "_client", None), "session", None)
    auth_session = getattr(session, "_auth_request_session", None)
    if not hasattr(service, "_fcm_url") or session is None or auth_session is None:
        # An upgrade renamed the internals: refuse rather than silently reach the real FCM, or
        # an unchecked token_uri.
        raise ImproperlyConfigured("firebase_admin internals changed: cannot set the FCM endpoint")
    if base_url:
        service._fcm_url = f"{base_url}/v1/projects/{quote(app.project_id, safe='')}/messages:send"
    for prefix in list(session.adapters):
        session.mount(prefix, requests.adapters.HTTPAdapter(max_retries=0))
    if guarded:
        outbound.guard_session(auth_session, outbound.GuardedAdapter(max_retries=0))


class FcmProvider(PushProvider):
    """Firebase Cloud Messaging, HTTP v1 API, through firebase-admin."""

    kind = "fcm"
    secret_fields = ("service_account",)
    platforms = ("fcm",)

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(config, ("service_account", "timeout"))
        account = config.get("service_account")
        if isinstance(account, str):
            try:
                # Inside a string, so the body's depth and NUL checks have not seen it.
                account = input_limits.loads(account, field="config.service_account")
            except ValueError:
                raise ValueError("service_account: not valid JSON") from None
        if not isinstance(account, dict):
            raise ValueError("service_account: the JSON key file of a Google service account is required")
        for key in ("project_id", "client_email", "private_key", "token_uri"):
            if not isinstance(account.get(key), str) or not account[key]:
                raise ValueError(f"service_account: missing {key}")
        if not account["token_uri"].startswith(("https://", "http://")):
            raise ValueError("service_account: token_uri must be an http(s) URL")
        try:
            credentials.Certificate(account)  # checks the type and parses the private key; no network
        except ValueError as exc:
            raise ValueError(f"service_account: {exc}") from None
        return {"service_account": account, "timeout": optional_timeout(config)}

    @classmethod
    def destinations(cls, config: dict) -> list[tuple[str, str, int]]:
        # The FCM endpoint is the deployment's (ALERTFLOW_FCM_BASE_URL); the OAuth one is the tenant's.
        return [("service_account.token_uri", *outbound.url_host_port(config["service_account"]["token_uri"]))]

    def send(self, out: Outgoing) -> Sent:
        app = _fcm_app(
            self.config["service_account"],
            settings.ALERTFLOW_FCM_BASE_URL.rstrip("/"),
            self.config["timeout"],
            self.guarded,
        )
        try:
            message = messaging.Message(
                # A device's registration token, as apps get it (`getToken()`). firebase-admin 7.7
                # calls `token` deprecated for `fid`, a Firebase installation ID: another id,
                # sent as another field, which registered devices do not have.
                token=out.to,
                notification=messaging.Notification(
                    title=self.field(out, "title") or None,
                    body=self.field(out, "body") or None,
                    image=self.field(out, "image") or None,
                ),
                # FCM data is a map of strings to strings (FCM v1 reference, Message.data).
                data={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in self.data(out).items()} or None,
            )
            name = messaging.send(message, app=app)
        except ValueError as exc:
            # Raised by the SDK's own checks before any request: the content cannot be sent.
            raise ProviderError(
                f"FCM message refused by the SDK: {exc}", permanent=True, code=Code.BAD_REQUEST
            ) from exc
        except fcm_errors.FirebaseError as exc:
            raise classify_fcm(exc) from exc
        except google_auth_errors.GoogleAuthError as exc:
            # The OAuth token request (service account -> token_uri) failed.
            raise ProviderError(
                f"FCM OAuth token: {exc}",
                permanent=not (isinstance(exc, google_auth_errors.TransportError) or exc.retryable),
                code=Code.UNAVAILABLE if isinstance(exc, google_auth_errors.TransportError) else Code.AUTH,
            ) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"FCM OAuth token: {exc}", permanent=False, code=Code.UNAVAILABLE) from exc
        return Sent(name)


def classify_fcm(exc: fcm_errors.FirebaseError) -> ProviderError:
    """FCM v1 errors (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode)."""
    detail = f"FCM {exc.code}: {exc}"
    retry_after = _retry_after(exc.http_response)
    if isinstance(exc, (messaging.UnregisteredError, messaging.SenderIdMismatchError)):
        # UNREGISTERED: the app was uninstalled or the token expired. SENDER_ID_MISMATCH: the token
        # belongs to another Firebase project. Either way this token will never work here.
        return ProviderError(detail, permanent=True, code=Code.UNREGISTERED, deactivate_device=True)
    if isinstance(exc, fcm_errors.InvalidArgumentError):
        if _names_the_token(exc):
            return ProviderError(detail, permanent=True, code=Code.INVALID_ADDRESS, deactivate_device=True)
        return ProviderError(detail, permanent=True, code=Code.BAD_REQUEST)
    if isinstance(exc, fcm_errors.ResourceExhaustedError):  # QUOTA_EXCEEDED
        return ProviderError(detail, permanent=False, code=Code.RATE_LIMITED, retry_after=retry_after)
    if isinstance(exc, (fcm_errors.UnavailableError, fcm_errors.InternalError, fcm_errors.DeadlineExceededError)):
        # 503, 500, timeouts; the SDK maps connection errors to UnavailableError too.
        return ProviderError(detail, permanent=False, code=Code.UNAVAILABLE, retry_after=retry_after)
    if isinstance(exc, (fcm_errors.UnauthenticatedError, fcm_errors.PermissionDeniedError)):
        # THIRD_PARTY_AUTH_ERROR (APNs certificate or web push key in Firebase), wrong project rights.
        return ProviderError(detail, permanent=True, code=Code.AUTH)
    return ProviderError(detail, permanent=True, code=Code.BAD_REQUEST)


def _names_the_token(exc: fcm_errors.FirebaseError) -> bool:
    """Whether an INVALID_ARGUMENT is about `message.token` rather than the payload.

    FCM answers both with 400 INVALID_ARGUMENT; a bad token comes with a `google.rpc.BadRequest`
    field violation on `message.token` and the text "not a valid FCM registration token".
    """
    try:
        details = exc.http_response.json()["error"].get("details", [])
    except (AttributeError, KeyError, TypeError, ValueError):
        details = []
    for detail in details:
        for violation in (detail or {}).get("fieldViolations", []) or []:
            if violation.get("field") == "message.token":
                return True
    return "registration token" in str(exc).lower()


# --- APNs -----------------------------------------------------------------------------------------

APNS_PRODUCTION = "https://api.push.apple.com"
APNS_SANDBOX = "https://api.sandbox.push.apple.com"
# Apple refuses a provider token older than an hour and one refreshed more often than every 20
# minutes ("Establishing a token-based connection to APNs"): reuse each for 50 minutes.
APNS_TOKEN_SECONDS = 50 * 60

_apns_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_apns_lock = threading.Lock()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def apns_provider_token(team_id: str, key_id: str, private_key_pem: str, *, now: float | None = None) -> str:
    """An ES256 JWT `{alg, kid}.{iss, iat}` signed with the .p8 key, cached for 50 minutes."""
    now = time.time() if now is None else now
    cache_key = (team_id, key_id, hashlib.sha256(private_key_pem.encode()).hexdigest())
    with _apns_lock:
        cached = _apns_tokens.get(cache_key)
        if cached and now - cached[1] < APNS_TOKEN_SECONDS:
            return cached[0]
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        header = _b64url(json.dumps({"alg": "ES256", "kid": key_id}, separators=(",", ":")).encode())
        claims = _b64url(json.dumps({"iss": team_id, "iat": int(now)}, separators=(",", ":")).encode())
        signing_input = f"{header}.{claims}".encode()
        # JWS ES256 is the raw 32-byte r and s (RFC 7518 3.4), not the DER cryptography returns.
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        token = f"{header}.{claims}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        _apns_tokens[cache_key] = (token, now)
        return token


def _forget_apns_token(team_id: str, key_id: str) -> None:
    with _apns_lock:
        for cache_key in [k for k in _apns_tokens if k[:2] == (team_id, key_id)]:
            del _apns_tokens[cache_key]


class ApnsProvider(PushProvider):
    """Apple Push Notification service, HTTP/2 with token (.p8 key) authentication."""

    kind = "apns"
    secret_fields = ("private_key",)
    platforms = ("apns",)

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(
            config, ("team_id", "key_id", "private_key", "topic", "use_sandbox", "api_url", "timeout")
        )
        team_id, key_id = require_str(config, "team_id"), require_str(config, "key_id")
        for field, value in (("team_id", team_id), ("key_id", key_id)):
            if not (len(value) == 10 and value.isalnum()):
                raise ValueError(f"{field}: must be the 10-character identifier from the Apple developer account")
        private_key = require_str(config, "private_key")
        try:
            key = serialization.load_pem_private_key(private_key.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("private_key: not a PEM private key (the .p8 file's content)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("private_key: must be the P-256 (ES256) key of an APNs .p8 file")
        return {
            "team_id": team_id,
            "key_id": key_id,
            "private_key": private_key,
            "topic": require_str(config, "topic"),
            "use_sandbox": optional_bool(config, "use_sandbox", False),
            "api_url": optional_url(config, "api_url"),
            "timeout": optional_timeout(config),
        }

    @classmethod
    def destinations(cls, config: dict) -> list[tuple[str, str, int]]:
        return [("api_url", *outbound.url_host_port(config["api_url"]))] if config["api_url"] else []

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._client: httpx.Client | None = None
        c = self.config
        self.base_url = c["api_url"] or (APNS_SANDBOX if c["use_sandbox"] else APNS_PRODUCTION)

    def open(self) -> None:
        # APNs wants one long-lived HTTP/2 connection carrying many requests (Apple: "Sending
        # notification requests to APNs"). Plain-http test fakes get HTTP/1.1, which is fine.
        if self.guarded:
            # No proxies from the environment either (trust_env): a proxy connects unchecked.
            transport = outbound.guarded_httpx_transport(http2=True)
            self._client = httpx.Client(transport=transport, timeout=self.config["timeout"], trust_env=False)
        else:
            self._client = httpx.Client(http2=True, timeout=self.config["timeout"])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def payload(self, out: Outgoing) -> dict:
        alert = {k: v for k in ("title", "body") if (v := self.field(out, k))}
        aps: dict[str, Any] = {"alert": alert}
        data = {k: v for k, v in self.data(out).items() if k != "aps"}
        if image := self.field(out, "image"):
            # The image is fetched on the device by a Notification Service Extension, which only
            # runs for mutable-content notifications.
            aps["mutable-content"] = 1
            data.setdefault("image", image)
        return {"aps": aps, **data}

    def send(self, out: Outgoing) -> Sent:
        if self._client is None:
            with self:
                return self.send(out)
        c = self.config
        headers = {
            "authorization": f"bearer {apns_provider_token(c['team_id'], c['key_id'], c['private_key'])}",
            "apns-topic": c["topic"],
            "apns-push-type": "alert",
            "apns-priority": "10",
        }
        with suppress(ValueError):
            # apns-id must be a UUID; Apple echoes it, so our Message id shows up in its logs.
            headers["apns-id"] = str(uuid.UUID(out.message_id))
        url = f"{self.base_url}/3/device/{quote(out.to, safe='')}"
        try:
            response = self._client.post(url, headers=headers, content=json.dumps(self.payload(out)).encode())
        except httpx.HTTPError as exc:
            # Timeouts, refused/reset connections, HTTP/2 GOAWAY: the network.
            raise ProviderError(f"APNs unreachable: {exc!r}", permanent=False, code=Code.UNAVAILABLE) from exc
        if response.status_code == 200:
            return Sent(response.headers.get("apns-id", ""))
        raise self.classify(response)

    def classify(self, response: httpx.Response) -> ProviderError:
        # https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
        body = json_body(response)
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
        status = response.status_code
        detail = summarize_http_error("APNs", status, body)
        if status == 410 or (status == 400 and reason in ("BadDeviceToken", "Unregistered")):
            # 410 Unregistered: the token is no longer active for the topic.
            return ProviderError(detail, permanent=True, code=Code.UNREGISTERED, deactivate_device=True)
        if status == 400 and reason in ("BadTopic", "MissingTopic", "TopicDisallowed"):
            # The configured `topic` (the app's bundle id) is wrong for this key: every send fails.
            return ProviderError(detail, permanent=True, code=Code.CONFIGURATION)
        if status == 400 and reason == "DeviceTokenNotForTopic":
            # The token is another app's. The device is kept: a wrong topic in our config reads
            # the same, and deactivating every device for it would be worse than one failure.
            return ProviderError(detail, permanent=True, code=Code.INVALID_ADDRESS)
        if status == 403 and reason == "ExpiredProviderToken":
            # Our JWT aged out (clock skew, or cached past an hour): a new one will do.
            _forget_apns_token(self.config["team_id"], self.config["key_id"])
            return ProviderError(detail, permanent=False, code=Code.AUTH)
        return http_status_error(status, detail, retry_after=_retry_after(response))


# --- Web Push -------------------------------------------------------------------------------------


class WebPushProvider(PushProvider):
    """Web Push (RFC 8030) with VAPID (RFC 8292), payload encrypted by pywebpush (RFC 8291)."""

    kind = "webpush"
    secret_fields = ("vapid_private_key",)
    platforms = ("webpush",)
    # The endpoint is the device's: refused, it stops the message without blaming the provider.
    refused_destination_code = Code.INVALID_ADDRESS

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(config, ("vapid_private_key", "vapid_subject", "ttl", "timeout"))
        key = require_str(config, "vapid_private_key")
        try:
            cls.load_key(key)
        except Exception:  # py_vapid raises whatever its decoder does (binascii, ValueError, ...)
            raise ValueError("vapid_private_key: not a VAPID private key (base64url raw, DER or PEM)") from None
        subject = require_str(config, "vapid_subject")
        if not subject.startswith(("mailto:", "https://")):
            # RFC 8292 2.1: the "sub" claim is a mailto: or https: contact URI.
            raise ValueError("vapid_subject: must be a mailto: or https: URI")
        return {
            "vapid_private_key": key,
            "vapid_subject": subject,
            # How long the push service keeps an undelivered message (RFC 8030 5.2).
            "ttl": optional_int(config, "ttl", 86400, low=0, high=28 * 86400),
            "timeout": optional_timeout(config),
        }

    @staticmethod
    def load_key(key: str) -> Vapid:
        # A Vapid object, never the string: pywebpush reads a string that names an existing file
        # as a key file, and this string comes from a tenant.
        if "-----BEGIN" in key:
            return Vapid.from_pem(key.encode())
        return Vapid.from_string(key)

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._vapid = self.load_key(self.config["vapid_private_key"])
        self._session: requests.Session | None = None

    def open(self) -> None:
        self._session = requests.Session()
        # The endpoint is the device's, registered by the tenant: guarded even when this provider
        # is the deployment's own (`guarded` speaks for the config, which names no host here).
        outbound.guard_session(self._session)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def send(self, out: Outgoing) -> Sent:
        if self._session is None:
            with self:  # pywebpush without a session posts with bare requests: unguarded
                return self.send(out)
        try:
            subscription = json.loads(out.to)
            endpoint = subscription["endpoint"]
            keys = subscription["keys"]
            if not (isinstance(endpoint, str) and endpoint.startswith(("https://", "http://"))):
                raise ValueError("endpoint")
            if not (keys.get("p256dh") and keys.get("auth")):
                raise ValueError("keys")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ProviderError(
                f"not a push subscription: {exc!r}", permanent=True, code=Code.INVALID_ADDRESS, deactivate_device=True
            ) from exc
        payload = {k: v for k in ("title", "body", "image") if (v := self.field(out, k))}
        payload["data"] = self.data(out)
        payload["message_id"] = out.message_id
        try:
            response = webpush(
                subscription_info=subscription,
                data=json.dumps(payload),
                vapid_private_key=self._vapid,
                # A new dict each time: pywebpush writes "aud" (the endpoint's origin) into it.
                vapid_claims={"sub": self.config["vapid_subject"]},
                ttl=self.config["ttl"],
                timeout=self.config["timeout"],
                requests_session=self._session,
            )
        except WebPushException as exc:
            raise self.classify(exc) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"push service unreachable: {exc!r}", permanent=False, code=Code.UNAVAILABLE) from exc
        except ValueError as exc:
            # The subscription's p256dh key does not decode to a P-256 point: the browser's record is corrupt.
            raise ProviderError(
                f"bad subscription keys: {exc}", permanent=True, code=Code.INVALID_ADDRESS, deactivate_device=True
            ) from exc
        # RFC 8030 5: the push service answers 201 with the message's URL in Location.
        return Sent(response.headers.get("Location") or f"webpush:{out.message_id}")

    @staticmethod
    def classify(exc: WebPushException) -> ProviderError:
        response = exc.response
        status = getattr(response, "status_code", None)
        if status is None:
            return ProviderError(f"Web Push: {exc.message}", permanent=True, code=Code.BAD_REQUEST)
        detail = summarize_http_error("Web Push", status, json_body(response))
        if status in (404, 410):
            # The subscription expired or the user revoked permission (RFC 8030 7.3; MDN
            # PushSubscription): it will never accept a message again.
            return ProviderError(detail, permanent=True, code=Code.UNREGISTERED, deactivate_device=True)
        return http_status_error(status, detail, retry_after=_retry_after(response))


# --- Development sink -----------------------------------------------------------------------------


class ConsolePushProvider(PushProvider):
    """Appends each notification as one JSON line to `<VAR_DIR>/sinks/push.jsonl`."""

    kind = "console"
    platforms = ("fcm", "apns", "webpush")

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        return reject_unknown(config, ())

    def send(self, out: Outgoing) -> Sent:
        provider_id = f"console-push-{out.message_id}"
        record = {
            "id": provider_id,
            "time": datetime.now(UTC).isoformat(),
            "message_id": out.message_id,
            "platform": out.platform,
            "to": out.to,
            **{k: out.content.get(k) for k in ("title", "body", "data", "image")},
        }
        path = sink_path("push.jsonl")
        append_json_line(path, record)
        logger.info("push to %s device written to %s", out.platform or "a", path)
        return Sent(provider_id)
