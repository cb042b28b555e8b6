"""factory_boy factories for every model tests build. One place to change when a model does."""

import factory
from django.contrib.auth.hashers import make_password

from alertflow.choices import Role
from tenants.models import ApiKey, Category, Membership, Tenant

PASSWORD = "correct horse battery staple"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"member{n}@example.com")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))
    role = Role.MEMBER


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"category{n}")
    name = factory.SelfAttribute("key")
    channels = factory.LazyFunction(lambda: ["email"])


def api_key(tenant: Tenant, role: str = Role.OWNER, **fields) -> tuple[ApiKey, str]:
    return ApiKey.issue(tenant, name=f"{role} test key", role=role, **fields)


# --- preferences (models named by label: this block is appended without touching the imports) ---


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "preferences.Recipient"

    tenant = factory.SubFactory(TenantFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "preferences.Device"

    recipient = factory.SubFactory(RecipientFactory)
    tenant = factory.SelfAttribute("recipient.tenant")
    platform = "fcm"
    token = factory.Sequence(lambda n: f"fcm-token-{n}")


class TopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "preferences.Topic"

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"topic{n}")
    name = factory.SelfAttribute("key")


# --- templates_app (models named by label, like the block above) ---


class TemplateFactory(factory.django.DjangoModelFactory):
    """A live template at version 1: `TemplateFactory(tenant=t, channels={"sms": {"text": "Hi"}})`."""

    class Meta:
        model = "templates_app.Template"
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"template{n}")
    locale = "en"
    name = factory.SelfAttribute("code")
    version = 1

    @factory.post_generation
    def channels(obj, create, extracted, **kwargs):
        if create:
            channels = extracted or {"sms": {"text": "Hello {{ name }}"}}
            obj.versions.create(number=1, channels=channels, created_by="test")
