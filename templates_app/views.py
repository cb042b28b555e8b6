from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.views import TenantViewSet

from . import hooks, services
from .models import Template
from .serializers import (
    RenderResultSerializer,
    RenderSerializer,
    TemplateCreateSerializer,
    TemplateDetailSerializer,
    TemplateQuerySerializer,
    TemplateSerializer,
    TemplateUpdateSerializer,
    VersionSerializer,
)

LOCALE_PARAM = OpenApiParameter("locale", str, description="The locale (default en).")
VERSION_PARAM = OpenApiParameter("version", int, description="A version number (default the latest).")


def actor(request) -> str:
    """Who wrote a version, as a label that outlives the key: `Deploy key (af_AbC123…)`."""
    return str(request.user.key)[:200]


class TemplateViewSet(TenantViewSet, mixins.ListModelMixin):
    """Versioned per-locale templates. One object is a (code, locale): `?locale=` picks it."""

    queryset = Template.objects.live()
    serializer_class = TemplateSerializer
    lookup_field = "code"
    lookup_value_regex = "[^/]+"
    read_role = Role.MEMBER
    write_role = Role.ADMIN  # `render` lowers it to member: previewing changes nothing
    http_method_names = ["get", "post", "put", "delete", "head", "options"]
    extra_error_statuses = {"create": {409}}

    def code_templates(self):
        """The live templates of the path's code, every locale: what `?locale=` may name."""
        return self.get_queryset().filter(code=self.kwargs["code"])

    def query(self) -> dict:
        serializer = TemplateQuerySerializer(
            data=self.request.query_params, context={"templates": self.code_templates()}
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def get_object(self) -> Template:
        locale = self.query()["locale"]
        return get_object_or_404(self.get_queryset(), code=self.kwargs["code"], locale=locale)

    @extend_schema(request=TemplateCreateSerializer, responses={201: TemplateDetailSerializer})
    def create(self, request):
        adapted = hooks.adapted(self, request)  # another system's template body (hooks.py)
        if adapted is not None:
            return adapted
        serializer = TemplateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.create_template(self.tenant, created_by=actor(request), **serializer.validated_data)
        return Response(TemplateDetailSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[LOCALE_PARAM, VERSION_PARAM], responses={200: TemplateDetailSerializer})
    def retrieve(self, request, code=None):
        template = self.get_object()
        version = services.get_version(template, self.query().get("version"))
        return Response(TemplateDetailSerializer(version).data)

    @extend_schema(
        parameters=[LOCALE_PARAM], request=TemplateUpdateSerializer, responses={200: TemplateDetailSerializer}
    )
    def update(self, request, code=None):
        adapted = hooks.adapted(self, request, code)
        if adapted is not None:
            return adapted
        template = self.get_object()
        serializer = TemplateUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.update_template(template, created_by=actor(request), **serializer.validated_data)
        return Response(TemplateDetailSerializer(version).data)

    @extend_schema(
        parameters=[OpenApiParameter("locale", str, description="Delete only this locale (default: all of them).")],
        responses={204: None},
    )
    def destroy(self, request, code=None):
        templates = self.get_queryset().filter(code=code)
        if "locale" in request.query_params:
            templates = templates.filter(locale=self.query()["locale"])
        if not services.delete_templates(templates):
            raise ApiError(404, "not_found", "No such template.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[LOCALE_PARAM], responses={200: VersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request, code=None):
        template = self.get_object()
        page = self.paginate_queryset(template.versions.order_by("-number"))
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    @extend_schema(request=RenderSerializer, responses={200: RenderResultSerializer})
    @action(detail=True, methods=["post"], write_role=Role.MEMBER)
    def render(self, request, code=None):
        serializer = RenderSerializer(data=request.data, context={"templates": self.code_templates()})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        recipient = data["recipient"]
        locale = data.get("locale") or recipient.get("locale") or self.tenant.default_locale
        version = services.resolve_version(self.tenant, code, locale, data.get("version"))
        content = version.channels.get(data["channel"])
        if content is None:
            raise ApiError(
                400,
                "channel_not_defined",
                f"Template {code!r} v{version.number} has no {data['channel']} content.",
                {"channels": list(version.channels)},
            )
        context = services.build_context(self.tenant.name, recipient, data["data"])
        result = services.render_channel(content, data["channel"], context, cache_key=version.pk)
        body = {
            "code": code,
            "channel": data["channel"],
            "locale": version.template.locale,
            "version": version.number,
            "rendered": result.fields,
            "missing": result.missing,
        }
        return Response(body)
