"""Work on tenants that spans models: registration, invitations, logins and role changes."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from alertflow.choices import Role
from alertflow.errors import ApiError

from .models import DEFAULT_CATEGORY_CHANNELS, ApiKey, Category, Membership, Tenant

INVITE_SALT = "alertflow.invite"


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


@transaction.atomic
def invite(tenant: Tenant, email: str, role: str, name: str = "") -> tuple[Membership, str | None]:
    """Add a person to a tenant. Returns the invitation token for people who have no password yet."""
    User = get_user_model()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(username=email, email=email, first_name=name[:150])
        user.set_unusable_password()
        user.save(update_fields=["password"])
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    token = None
    if not user.has_usable_password():
        token = signing.dumps({"membership": membership.pk}, salt=INVITE_SALT)
    return membership, token


def accept_invite(token: str, password: str) -> Membership:
    max_age = timedelta(days=settings.ALERTFLOW_INVITE_DAYS)
    try:
        payload = signing.loads(token, salt=INVITE_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ApiError(400, "invite_expired", "This invitation has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise ApiError(400, "invite_invalid", "This invitation token is not valid.") from None
    membership = Membership.objects.select_related("user").filter(pk=payload.get("membership")).first()
    if membership is None:
        raise ApiError(400, "invite_invalid", "This invitation was withdrawn.")
    user = membership.user
    if user.has_usable_password():
        raise ApiError(409, "invite_used", "This invitation was already accepted; log in instead.")
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ApiError(400, "weak_password", " ".join(exc.messages), {"password": exc.messages}) from None
    user.set_password(password)
    user.save(update_fields=["password"])
    return membership


def login(email: str, password: str, tenant_id=None) -> tuple[ApiKey, str]:
    """Check a member's password and open a session key carrying their role."""
    User = get_user_model()
    user = User.objects.filter(email__iexact=email).first()
    if user is None or authenticate(username=user.get_username(), password=password) is None:
        raise ApiError(401, "invalid_credentials", "Wrong email or password.")
    memberships = Membership.objects.select_related("tenant").filter(user=user, tenant__active=True)
    if tenant_id is not None:
        memberships = memberships.filter(tenant_id=tenant_id)
    memberships = list(memberships)
    if not memberships:
        raise ApiError(401, "invalid_credentials", "Wrong email or password.")
    if len(memberships) > 1:
        tenants = [{"id": str(m.tenant_id), "name": m.tenant.name} for m in memberships]
        raise ApiError(400, "tenant_required", "You belong to several tenants: name one.", {"tenants": tenants})
    membership = memberships[0]
    expires = timezone.now() + timedelta(hours=settings.ALERTFLOW_LOGIN_TOKEN_HOURS)
    return ApiKey.issue(
        membership.tenant,
        name=f"Login of {user.email}",
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
