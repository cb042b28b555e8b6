"""factory_boy factories for every model tests build. One place to change when a model does."""

import factory
from django.contrib.auth import get_user_model

from alertflow.choices import Role
from tenants.models import ApiKey, Category, Membership, Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.SelfAttribute("username")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
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
