"""Work on tenants that spans models: registration, invitations, logins, role changes and deletion."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from alertflow.choices import Role
from alertflow.errors import ApiError, TryAgain, is_deadlock
from alertflow.versioned_cache import VersionedCache

from .models import DEFAULT_CATEGORY_CHANNELS, ApiKey, Category, Membership, Tenant

INVITE_SALT = "alertflow.invite"


# Categories named in sends, per process (alertflow/versioned_cache.py); every change to a
# category row reaches it through tenants/signals.py.
categories_by_key = VersionedCache("categories")


def find_category(tenant: Tenant, key: str) -> Category | None:
    """The tenant's category `key`, or None. The instance may be shared with other requests of
    the process: read it, never change it."""
    return categories_by_key.get(tenant.pk, key, lambda: Category.objects.filter(tenant=tenant, key=key).first())


def unknown_category(key: str) -> serializers.ValidationError:
    """The 400 for a category `key` the tenant has not got (a send's, a campaign's). A list,
    as a serializer's `validate` makes of it: raised by a service, the answer is the same."""
    return serializers.ValidationError({"category": [f"No category {key!r}."]})


@transaction.atomic
def register(service_name: str, notification_types: list[str]) -> tuple[Tenant, str]:
    """Create a tenant, one category per notification type and an owner key; return the secret."""
    tenant = Tenant.objects.create(name=service_name)
    Category.objects.bulk_create(
        Category(tenant=tenant, key=key, name=key, channels=list(DEFAULT_CATEGORY_CHANNELS))
        for key in notification_types
    )
    _, secret = ApiKey.issue(tenant, name="Owner key (registration)", role=Role.OWNER)
    return tenant, secret


# How many times a deletion of tenants is tried when PostgreSQL aborts it to break a deadlock, or
# a row committed meanwhile names one it deleted (a foreign key).
DELETE_TENANTS_ATTEMPTS = 3


def delete_tenants(tenants: QuerySet[Tenant]) -> None:
    """Delete these tenants with everything of theirs (a cascade); every deletion of tenants (the
    admin's, one or selected) goes through here. The receivers of the cascade's signals forget
    what was cached of them (keys, categories, providers...) and close their inbox sockets."""
    for attempt in range(1, DELETE_TENANTS_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                # Their rows locked first: a send of theirs commits its rows before (the delete
                # below then finds and deletes them) or waits for this commit (its foreign key
                # checks lock the tenant's row) and is refused as its key is from then on (401).
                # Unlocked, rows committed between the delete's collection and its DELETEs failed
                # this commit on a foreign key: a 500, nothing deleted. In one order (the primary
                # key's), so two deletions never wait for each other.
                locked = Tenant.objects.select_for_update().filter(pk__in=tenants.values("pk")).order_by("pk")
                Tenant.objects.filter(pk__in=list(locked.values_list("pk", flat=True))).delete()
                if connection.vendor == "postgresql":
                    # The foreign keys now, not at the commit: a row the tenant's lock does not
                    # hold back (a worker's delivery attempt names only its message) committed
                    # after the cascade deleted its kind and before it deleted what it names.
                    # Checked at the commit, which may be the caller's (the admin's transaction),
                    # that was a 500 with nothing deleted; here it is an IntegrityError the next
                    # attempt, which collects that row too, answers. (SQLite's one writer leaves
                    # no such gap.)
                    connection.check_constraints()
            return
        except (OperationalError, IntegrityError) as exc:
            # A send waiting for the lock above to commit may hold a row the delete needs (its
            # month's usage counter, updated before its commit): a deadlock, which PostgreSQL
            # breaks by aborting one side. The send then commits, and the next attempt finds its
            # rows; aborted instead, the send waits for this deletion and answers 401.
            retried = isinstance(exc, IntegrityError) or is_deadlock(exc)
            if not retried:
                raise
            if attempt == DELETE_TENANTS_ATTEMPTS:
                raise DeletionContended() from exc


class DeletionContended(TryAgain):
    """Every attempt of a deletion of tenants lost to their sends or deliveries (a deadlock, a
    row committed meanwhile); nothing was deleted."""

    def __init__(self):
        message = "The tenants' sends kept changing their rows while they were deleted; nothing was deleted: try again."
        super().__init__("deletion_contended", message, DELETION_RETRY_SECONDS)


# A moment: the sends that raced the deletion have committed by then.
DELETION_RETRY_SECONDS = 5


def invite(tenant: Tenant, email: str, role: str, name: str = "") -> tuple[Membership, str]:
    """Create a person's identity in this tenant and return it with its invitation token.

    The identity is new even when the email is a member elsewhere: nothing about other tenants
    is looked at, so the answer is the same for every email and sets nothing outside `tenant`.
    """
    try:
        with transaction.atomic():
            membership = Membership.objects.create(tenant=tenant, email=email, name=name, role=role)
    except IntegrityError:  # the per-tenant unique email
        raise ApiError(400, "already_member", "This person is already a member.", {"email": [email]}) from None
    return membership, signing.dumps({"membership": membership.pk}, salt=INVITE_SALT)


@transaction.atomic
def accept_invite(token: str, password: str) -> Membership:
    max_age = timedelta(days=settings.ALERTFLOW_INVITE_DAYS)
    try:
        payload = signing.loads(token, salt=INVITE_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ApiError(400, "invite_expired", "This invitation has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise ApiError(400, "invite_invalid", "This invitation token is not valid.") from None
    # Locked so two acceptances of one token cannot both set a password.
    membership = Membership.objects.select_for_update().filter(pk=payload.get("membership")).first()
    if membership is None:
        raise ApiError(400, "invite_invalid", "This invitation was withdrawn.")
    if membership.has_usable_password():
        raise ApiError(409, "invite_used", "This invitation was already accepted; log in instead.")
    try:
        validate_password(password, membership)
    except DjangoValidationError as exc:
        raise ApiError(400, "weak_password", " ".join(exc.messages), {"password": exc.messages}) from None
    membership.set_password(password)
    membership.save(update_fields=["password"])
    return membership


def login(email: str, password: str, tenant_id=None) -> tuple[ApiKey, str]:
    """Check a member's password and open a session key carrying their role.

    Each tenant holds its own identity for an email, so the password is checked against each of
    them (or only the named tenant's). Only identities whose password matched are ever named
    back, so a caller learns nothing about tenants whose password they do not hold.
    """
    candidates = Membership.objects.select_related("tenant").filter(
        email=Membership.normalize_email(email), tenant__active=True
    )
    if tenant_id is not None:
        candidates = candidates.filter(tenant_id=tenant_id)
    candidates = list(candidates)
    if not candidates:
        make_password(password)  # spend a hash's time, so unknown emails are not faster to refuse
    memberships = [m for m in candidates if m.check_password(password)]
    if not memberships:
        raise ApiError(401, "invalid_credentials", "Wrong email or password.")
    if len(memberships) > 1:
        tenants = [{"id": str(m.tenant_id), "name": m.tenant.name} for m in memberships]
        raise ApiError(400, "tenant_required", "You belong to several tenants: name one.", {"tenants": tenants})
    membership = memberships[0]
    expires = timezone.now() + timedelta(hours=settings.ALERTFLOW_LOGIN_TOKEN_HOURS)
    return ApiKey.issue(
        membership.tenant,
        name=f"Login of {membership.email}",
        role=membership.role,
        kind=ApiKey.Kind.SESSION,
        membership=membership,
        expires=expires,
    )


@transaction.atomic
def change_role(membership: Membership, role: str) -> Membership:
    if membership.role == Role.OWNER and role != Role.OWNER:
        _keep_an_owner(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove(membership: Membership) -> None:
    if membership.role == Role.OWNER:
        _keep_an_owner(membership)
    membership.delete()


def _keep_an_owner(leaving: Membership) -> None:
    # Lock the tenant's owners so two concurrent demotions cannot both see "another owner".
    owners = list(
        Membership.objects.select_for_update()
        .filter(tenant_id=leaving.tenant_id, role=Role.OWNER)
        .values_list("pk", flat=True)
    )
    if owners == [leaving.pk]:
        raise ApiError(409, "last_owner", "A tenant keeps at least one owner: promote someone else first.")
