from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins

from alertflow.choices import Role
from alertflow.views import TenantViewSet

from .models import PROVIDER_CHANNELS, Provider
from .serializers import ProviderSerializer


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("channel", str, enum=[c for c, _label in PROVIDER_CHANNELS])])
)
class ProviderViewSet(
    TenantViewSet,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """A tenant's provider accounts per channel, in failover order (`?channel=` filters).

    Admins only, reads included: which ESP and which sender a tenant uses is configuration a
    read-only member has no need for, and the config holds account identifiers.
    """

    queryset = Provider.objects.all()
    serializer_class = ProviderSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        queryset = super().get_queryset()
        channel = self.request.query_params.get("channel") if self.request else None
        return queryset.filter(channel=channel) if channel else queryset
