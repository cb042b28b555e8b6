"""Base viewsets: tenant scoping lives here and nowhere else."""

from rest_framework import mixins, viewsets


class TenantScopedMixin:
    """Every queryset is cut down to the caller's tenant; another tenant's row is a 404.

    Subclasses set `queryset` (or override `get_base_queryset`) and never filter by tenant
    themselves. Serializers get the tenant in their context for validation and creation.
    """

    @property
    def tenant(self):
        # None only while drf-spectacular introspects the view without a real caller.
        return getattr(self.request.user, "tenant", None)

    def get_base_queryset(self):
        return super().get_queryset()

    def get_queryset(self):
        return self.get_base_queryset().filter(tenant=self.tenant)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["tenant"] = self.tenant
        return context

    def perform_create(self, serializer):
        serializer.save(tenant=self.tenant)


class TenantViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    """Base of every tenant-owned resource. List it FIRST, before DRF's mixins:

        class TopicViewSet(TenantViewSet, mixins.ListModelMixin, mixins.CreateModelMixin): ...

    Listed after them, `CreateModelMixin.perform_create` would shadow ours and save rows
    without a tenant; the check below refuses to build such a class.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.perform_create is mixins.CreateModelMixin.perform_create:
            raise TypeError(f"{cls.__name__}: list TenantViewSet before DRF's mixins (tenant scoping)")
