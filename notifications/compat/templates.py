"""The seeds' template bodies on AlertFlow's own `/api/v1/templates` routes.

`adapt_template_body` is registered with templates_app's hook (templates_app/hooks.py) when the
app is ready: a body told apart by `template_dialect_of` goes to its seed's adapter, anything
else to AlertFlow's own handling, unchanged. `TemplatesRenderView` is HNG's
`POST /api/v1/templates/render`, a path that AlertFlow's router reads as the template coded
`render`: every other method on it still reaches that template.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from templates_app.serializers import TemplateCreateSerializer, TemplateDetailSerializer, TemplateUpdateSerializer
from templates_app.views import LOCALE_PARAM, TemplateViewSet, actor

from . import HNG, hng, template_dialect_of

# AlertFlow's own view of one template, for the requests that are not HNG's render.
template_detail = TemplateViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})


def adapt_template_body(view, request, code: str | None) -> Response | None:
    """A seed's template body on `POST /templates` (code None) or `PUT /templates/{code}`."""
    if template_dialect_of(request.data) != HNG:
        return None
    if code is None:
        envelope = hng.create_template(view.tenant, request.data, actor(request))
        return Response(envelope, status=status.HTTP_201_CREATED)
    envelope = hng.update_template(view.get_queryset(), code, request.data, view.query()["locale"], actor(request))
    return Response(envelope)


class TemplatesRenderView(hng.HngRenderView):
    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            return template_detail(request, code="render")
        return super().dispatch(request, *args, **kwargs)


class EnvelopeSerializer(serializers.Serializer):
    """HNG's answer: `{"success", "data", "message"}`."""

    success = serializers.BooleanField()
    data = serializers.DictField()
    message = serializers.CharField()


def either(name: str, *choices) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(component_name=name, serializers=list(choices), resource_type_field_name=None)


class TemplateBodiesSchema(OpenApiViewExtension):
    """/api/schema documents both bodies of `POST /templates` and `PUT /templates/{code}`."""

    target_class = "templates_app.views.TemplateViewSet"

    def view_replacement(self):
        @extend_schema_view(
            create=extend_schema(
                request=either("TemplateCreateBody", TemplateCreateSerializer, hng.HngTemplateSerializer),
                responses={201: either("TemplateCreated", TemplateDetailSerializer, EnvelopeSerializer)},
            ),
            update=extend_schema(
                parameters=[LOCALE_PARAM],
                request=either("TemplateUpdateBody", TemplateUpdateSerializer, hng.HngTemplateUpdateSerializer),
                responses={200: either("TemplateUpdated", TemplateDetailSerializer, EnvelopeSerializer)},
            ),
        )
        class Fixed(self.target_class):
            pass

        return Fixed
