"""The paths seeds share with AlertFlow's own API or with each other, and their dispatch.

`adapt_template_body` is registered with templates_app's hook (templates_app/hooks.py) when the
app is ready: a body told apart by `template_dialect_of` goes to its seed's adapter, anything
else to AlertFlow's own handling, unchanged. `TemplatesRenderView` is HNG's
`POST /api/v1/templates/render`, a path that AlertFlow's router reads as the template coded
`render`: every other method on it still reaches that template. `UserPreferencesView` is
`GET/PUT /api/v1/users/{id}/preferences` of both HNG and the Kafka service.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.views import TenantScopedMixin
from preferences import services as preference_services
from preferences.models import Recipient
from templates_app.serializers import TemplateCreateSerializer, TemplateDetailSerializer, TemplateUpdateSerializer
from templates_app.views import LOCALE_PARAM, TemplateViewSet, actor

from . import HNG, KAFKA, hng, kafka, preference_dialect_of, template_dialect_of

# AlertFlow's own view of one template, for the requests that are not HNG's render.
template_detail = TemplateViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})


def adapt_template_body(view, request, code: str | None) -> Response | None:
    """A seed's template body on `POST /templates` (code None) or `PUT /templates/{code}`."""
    dialect = template_dialect_of(request.data)
    if dialect == KAFKA:
        if code is not None:
            # The Kafka service documents no template update: its marker here is a foreign field.
            raise ApiError(
                400,
                "validation_error",
                "template_id: unknown field.",
                {"fields": {"template_id": ["Unknown field."]}},
            )
        return Response(
            kafka.create_template(view.tenant, request.data, actor(request)), status=status.HTTP_201_CREATED
        )
    if dialect != HNG:
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


def either(name: str, *choices) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(component_name=name, serializers=list(choices), resource_type_field_name=None)


class UserPreferencesView(TenantScopedMixin, APIView):
    """`GET/PUT /api/v1/users/{id}/preferences`: the recipient's channel preferences for HNG's
    clients (`{"email": true, "push": true}`) and the Kafka service's (`{"channels": {...}}`).

    Both read the same answer, which carries both shapes' fields (they do not clash): HNG's
    envelope `{"success", "data": {"email", "push"}, "message"}` and Kafka's `user_id` and
    `channels`. A `PUT` is told apart by its fields (`preference_dialect_of`); it changes only
    the channels it names and keeps the rest of the document.
    """

    write_role = Role.ADMIN
    extra_error_statuses = {"get": {404}, "put": {404, 503}}  # 503: preferences_unavailable

    def recipient(self, user_id: str) -> Recipient:
        recipient = Recipient.objects.filter(tenant=self.tenant, external_id=user_id).first()
        if recipient is None:
            raise ApiError(404, "not_found", "No such resource.")
        return recipient

    @staticmethod
    def answer(recipient: Recipient, document: dict, message: str) -> Response:
        body = {"success": True, "data": hng.preference_data(document), "message": message}
        return Response({**body, **kafka.preference_fields(recipient, document)})

    @extend_schema(responses={200: dict})
    def get(self, request, user_id):
        recipient = self.recipient(user_id)
        document = preference_services.get_preferences(recipient)
        return self.answer(recipient, document, "Preferences retrieved successfully")

    @extend_schema(
        request=either("UserPreferencesBody", hng.HngPreferencesSerializer, kafka.KafkaPreferencesSerializer),
        responses={200: dict},
    )
    def put(self, request, user_id):
        recipient = self.recipient(user_id)
        if preference_dialect_of(request.data) == KAFKA:
            changes = kafka.preference_changes(recipient, request.data)
        else:
            changes = hng.preference_changes(request.data)
        updated = preference_services.switch_channels(recipient, changes)
        return self.answer(recipient, updated, "Preferences updated successfully")


class EnvelopeSerializer(serializers.Serializer):
    """HNG's answer: `{"success", "data", "message"}`."""

    success = serializers.BooleanField()
    data = serializers.DictField()
    message = serializers.CharField()


class TemplateBodiesSchema(OpenApiViewExtension):
    """/api/schema documents both bodies of `POST /templates` and `PUT /templates/{code}`."""

    target_class = "templates_app.views.TemplateViewSet"

    def view_replacement(self):
        @extend_schema_view(
            create=extend_schema(
                request=either(
                    "TemplateCreateBody",
                    TemplateCreateSerializer,
                    hng.HngTemplateSerializer,
                    kafka.KafkaTemplateSerializer,
                ),
                responses={
                    201: either(
                        "TemplateCreated",
                        TemplateDetailSerializer,
                        EnvelopeSerializer,
                        kafka.KafkaTemplateAnswerSerializer,
                    )
                },
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
