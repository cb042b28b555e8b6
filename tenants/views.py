from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.throttling import AddressRateThrottle
from alertflow.views import TenantViewSet

from . import services
from .models import ApiKey, Category, Membership
from .serializers import (
    AcceptInviteSerializer,
    ApiKeySerializer,
    CategorySerializer,
    InvitedMemberSerializer,
    InviteSerializer,
    LoginResultSerializer,
    LoginSerializer,
    MembershipSerializer,
    NewApiKeySerializer,
    RegisteredSerializer,
    RegisterSerializer,
    RoleSerializer,
)
from .usage import usage_report


class PublicView(APIView):
    """An endpoint that needs no key, limited per client address instead."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = [AddressRateThrottle]


class RegisterView(PublicView):
    throttle_scope = "register"
    extra_error_statuses = {"post": {403}}

    @extend_schema(request=RegisterSerializer, responses={201: RegisteredSerializer}, auth=[])
    def post(self, request):
        if not settings.ALERTFLOW_REGISTRATION_OPEN:
            raise ApiError(403, "registration_closed", "Self-service registration is turned off here.")
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant, secret = services.register(**serializer.validated_data)
        return Response({"client_id": str(tenant.pk), "api_token": secret}, status=status.HTTP_201_CREATED)


class LoginView(PublicView):
    throttle_scope = "login"
    extra_error_statuses = {"post": {401}}

    @extend_schema(request=LoginSerializer, responses={200: LoginResultSerializer}, auth=[])
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key, secret = services.login(data["email"], data["password"], data.get("tenant"))
        return Response({"token": secret, "expires_at": key.expires, "role": key.role, "tenant": str(key.tenant_id)})


class AcceptInviteView(PublicView):
    throttle_scope = "login"
    extra_error_statuses = {"post": {409}}

    @extend_schema(request=AcceptInviteSerializer, responses={200: MembershipSerializer}, auth=[])
    def post(self, request):
        serializer = AcceptInviteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.accept_invite(**serializer.validated_data)
        return Response(MembershipSerializer(membership).data)


class CategoryViewSet(
    TenantViewSet,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    lookup_field = "key"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


class ApiKeyViewSet(TenantViewSet, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin):
    """Long-lived API keys. Owners only: a key can do whatever its role allows."""

    queryset = ApiKey.objects.filter(kind=ApiKey.Kind.API)
    serializer_class = ApiKeySerializer
    read_role = Role.OWNER
    write_role = Role.OWNER
    extra_error_statuses = {"destroy": {503}}  # keys_unavailable: a revocation Redis cannot hear of

    @extend_schema(responses={201: NewApiKeySerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, secret = ApiKey.issue(self.tenant, **serializer.validated_data)
        key.key = secret
        return Response(NewApiKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        """Revoking keeps the row, so the audit trail still names the key."""
        if instance.revoked is None:
            instance.revoked = timezone.now()
            instance.save(update_fields=["revoked"])


class MemberViewSet(
    TenantViewSet, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin
):
    queryset = Membership.objects.all()
    serializer_class = MembershipSerializer
    write_role = Role.OWNER
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # 409: the last owner stays; 503: keys_unavailable, a change Redis cannot hear of.
    extra_error_statuses = {"partial_update": {409, 503}, "destroy": {409, 503}}

    @extend_schema(request=InviteSerializer, responses={201: InvitedMemberSerializer})
    def create(self, request, *args, **kwargs):
        serializer = InviteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership, token = services.invite(self.tenant, **serializer.validated_data)
        # The invitation link is the tenant's to deliver (through AlertFlow itself, even); it
        # sets a password for this tenant's identity only.
        membership.invite_token = token
        return Response(InvitedMemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RoleSerializer, responses={200: MembershipSerializer})
    def partial_update(self, request, *args, **kwargs):
        serializer = RoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.change_role(self.get_object(), serializer.validated_data["role"])
        return Response(MembershipSerializer(membership).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.remove(instance)


class UsageView(APIView):
    """This month's messages per channel: used, the quota, what is left (null: unlimited)."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(usage_report(request.user.tenant))
