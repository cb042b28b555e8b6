"""Which providers carry a tenant's messages on a channel, in failover order.

The worker asks `providers_for()` for every message, so the answer (decrypted) is cached in each
process by the per-tenant versioned cache (alertflow/versioned_cache.py): one Redis GET per call
instead of a query and a decryption, and a change made on any web node (`invalidate()`, from the
signals) is seen by every worker on its next message. An entry also expires after `CACHE_TTL`
seconds, the bound on staleness when a change sends no signal (a raw `QuerySet.update()`).
While Redis is unreachable every call reads PostgreSQL.
"""

import copy
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from alertflow.versioned_cache import VersionedCache

from . import crypto
from .models import InboxSecret, Provider, WebhookEndpoint

if TYPE_CHECKING:
    from .channels.base import Provider as ProviderClient

CACHE_TTL = 30.0
_providers = VersionedCache("providers", seconds=CACHE_TTL)


@dataclass(frozen=True)
class ProviderSpec:
    """One provider to try: a tenant's `Provider` row, or a deployment default.

    `id` is the row's id, or `default:<channel>:<kind>` for a default. `config` is complete,
    secrets in clear: it is left out of the repr, and never logged. `guarded`: the config is a
    tenant's, so its connections pass the outbound guard; False for the deployment's defaults.
    """

    id: str
    channel: str
    kind: str
    name: str
    config: dict = field(repr=False)
    rate_limit: float | None = None
    guarded: bool = True

    def provider(self) -> "ProviderClient":
        """An instance of this provider's class, for this config."""
        from .channels import provider_class  # the registry imports SDKs: load it only when needed
        from .receipts import receipt_url

        return provider_class(self.channel, self.kind)(
            self.config, guarded=self.guarded, receipt_url=receipt_url(self.id)
        )


def providers_for(tenant_id, channel: str) -> list[ProviderSpec]:
    """The providers to try for `tenant_id` on `channel`, first choice first.

    The tenant's enabled providers in priority order; when the tenant has configured none at all
    for the channel, the deployment defaults (`delivery.channels.default_providers()`). A tenant
    whose providers on the channel are all disabled gets `[]`: it switched the channel off, and
    its messages must not leave through the deployment's accounts instead.

    Raises `crypto.SecretsUnreadable` when a provider's stored secrets cannot be decrypted (the
    encryption keys changed): a configuration error, not worth a retry.
    """
    specs = _providers.get(tenant_id, channel, partial(_load, tenant_id, channel))
    # Copies: a caller that edits its config must not edit everyone's cached one.
    return [replace(spec, config=copy.deepcopy(spec.config)) for spec in specs]


def invalidate(tenant_id) -> None:
    """Make every process reload `tenant_id`'s providers: now, and once the current transaction
    commits (alertflow/versioned_cache.py)."""
    _providers.changed(tenant_id)


def clear_cache() -> None:
    """Drop this process's cached lists (tests)."""
    _providers.clear()


# Every model field holding a Fernet token (delivery/crypto.py): what a key rotation rewrites.
ENCRYPTED_FIELDS = ((Provider, "secrets"), (WebhookEndpoint, "secrets"), (InboxSecret, "secret"))


def reencrypt_secrets() -> int:
    """Re-encrypt every stored secret under the first key, the last step of a key rotation
    (`manage.py reencrypt_secrets`).

    Returns how many rows were rewritten (providers, webhook endpoints, inbox secrets). Raises
    `crypto.SecretsUnreadable` for a secret no configured key opens (nothing after it is
    rewritten; fix the keys and run it again).
    """
    count = 0
    for model, column in ENCRYPTED_FIELDS:
        rows = model.objects.exclude(**{column: ""}).values_list("pk", column).iterator()
        for pk, token in rows:
            try:
                rotated = crypto.rotate(token)
            except crypto.SecretsUnreadable as exc:
                raise crypto.SecretsUnreadable(f"{model._meta.verbose_name} {pk}: {exc}") from None
            # Compare-and-set: a concurrent API write of a new secret wins over this rewrite. The
            # plaintext is unchanged, so no cached list needs invalidating.
            count += model.objects.filter(pk=pk, **{column: token}).update(**{column: rotated})
    return count


def _load(tenant_id, channel: str) -> tuple[ProviderSpec, ...]:
    rows = Provider.objects.filter(tenant_id=tenant_id, channel=channel)
    enabled = list(rows.filter(enabled=True).order_by("priority", "name"))
    if enabled:
        specs = []
        for row in enabled:
            try:
                config = row.full_config()
            except crypto.SecretsUnreadable as exc:
                raise crypto.SecretsUnreadable(f"Provider {row.pk} ({row.name!r}, {row.kind}): {exc}") from None
            specs.append(
                ProviderSpec(
                    id=str(row.pk),
                    channel=row.channel,
                    kind=row.kind,
                    name=row.name,
                    config=config,
                    rate_limit=row.rate_limit,
                )
            )
        return tuple(specs)
    if rows.exists():
        return ()
    return _defaults(channel)


def _defaults(channel: str) -> tuple[ProviderSpec, ...]:
    from .channels import default_providers  # the registry imports SDKs: load it only when needed

    specs = []
    seen: dict[str, int] = {}
    for item in default_providers():
        if item["channel"] != channel:
            continue
        kind = item["kind"]
        spec_id = f"default:{channel}:{kind}"
        seen[spec_id] = seen.get(spec_id, 0) + 1
        if seen[spec_id] > 1:  # two defaults of one kind (two SMTP relays) still need distinct ids
            spec_id = f"{spec_id}:{seen[spec_id]}"
        specs.append(
            ProviderSpec(
                id=spec_id,
                channel=channel,
                kind=kind,
                name=item.get("name") or kind,
                config=item["config"],
                guarded=False,  # the operator's own accounts and relays, from settings
            )
        )
    return tuple(specs)
