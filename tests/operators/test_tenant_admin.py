"""The operator's console checks a tenant's default locale as the recipients API checks a
recipient's locale, and a member's email as an invitation does, storing both as the API would."""

import pytest
from django.urls import reverse

from tenants.models import Membership
from tests.factories import MembershipFactory
from tests.operators.pages import errors_of, form_data, save

pytestmark = pytest.mark.django_db


def test_admin_refuses_a_default_locale_the_recipients_api_refuses_and_stores_the_canonical_one(
    admin_client, tenant, outsider_tenant
):
    change = reverse("admin:tenants_tenant_change", args=[tenant.pk])

    refused = save(admin_client, change, default_locale="english please")
    tenant.refresh_from_db()
    locale_after_refusal = tenant.default_locale
    saved = save(admin_client, change, default_locale="zh-hant-tw")

    assert refused.status_code == 200
    assert "is not a BCP 47 locale" in str(errors_of(refused)["default_locale"])
    assert locale_after_refusal == "en"
    assert saved.status_code == 302
    tenant.refresh_from_db()
    outsider_tenant.refresh_from_db()
    assert (tenant.default_locale, outsider_tenant.default_locale) == ("zh-Hant-TW", "en")


def test_admin_stores_a_members_email_as_an_invitation_does_and_refuses_one_the_invite_api_refuses(
    admin_client, tenant, outsider_tenant
):
    grace = MembershipFactory(tenant=tenant, email="grace@example.com")
    theirs = MembershipFactory(tenant=outsider_tenant, email="lin@example.com")
    change = reverse("admin:tenants_membership_change", args=[grace.pk])

    refused = save(admin_client, change, email="grace@@example")
    too_long = save(admin_client, change, email=f"{'g' * 64}@{'e' * 63}.{'x' * 63}.{'m' * 63}.com")
    # Another tenant's member with the same email is another identity: no conflict.
    saved = save(admin_client, change, email="  Lin@Example.COM ")

    assert refused.status_code == too_long.status_code == 200
    assert "email" in errors_of(refused)
    assert "email" in errors_of(too_long)
    assert saved.status_code == 302
    grace.refresh_from_db()
    theirs.refresh_from_db()
    assert (grace.email, theirs.email) == ("lin@example.com", "lin@example.com")


def test_admin_refuses_a_members_email_another_member_of_the_tenant_has_in_another_case(admin_client, tenant):
    MembershipFactory(tenant=tenant, email="ada@example.com")
    grace = MembershipFactory(tenant=tenant, email="grace@example.com")
    add = reverse("admin:tenants_membership_add")
    change = reverse("admin:tenants_membership_change", args=[grace.pk])

    renamed = save(admin_client, change, email="Ada@Example.com")
    added = admin_client.post(add, {"tenant": tenant.pk, "email": "ADA@example.com", "role": "member", "name": ""})

    assert renamed.status_code == added.status_code == 200
    assert "already exists" in str(errors_of(renamed))
    assert "already exists" in str(errors_of(added))
    grace.refresh_from_db()
    assert grace.email == "grace@example.com"
    assert list(Membership.objects.filter(tenant=tenant).values_list("email", flat=True).order_by("email")) == [
        "ada@example.com",
        "grace@example.com",
    ]


def test_tenant_pages_member_inline_checks_and_stores_emails_as_an_invitation_does(
    admin_client, tenant, outsider_tenant
):
    MembershipFactory(tenant=tenant, email="ada@example.com")
    MembershipFactory(tenant=outsider_tenant, email="grace@example.com")
    change = reverse("admin:tenants_tenant_change", args=[tenant.pk])

    def with_new_member(email):
        page = admin_client.get(change)
        data = form_data(page)
        [members] = [f.formset for f in page.context["inline_admin_formsets"] if f.opts.model is Membership]
        for form in members.forms:  # the rows drawn, posted back as they were
            data.update({form.add_prefix(name): form[name].value() for name in form.fields if form[name].value()})
        row = f"{members.prefix}-{len(members.forms)}"
        data.update(
            {f"{row}-email": email, f"{row}-role": "member", f"{members.prefix}-TOTAL_FORMS": len(members.forms) + 1}
        )
        return admin_client.post(change, data)

    not_an_email = with_new_member("ada at example")
    same_person = with_new_member("Ada@EXAMPLE.com")
    added = with_new_member(" Grace@Example.com")

    assert not_an_email.status_code == same_person.status_code == 200
    assert added.status_code == 302
    emails = Membership.objects.filter(tenant=tenant).order_by("email").values_list("email", flat=True)
    assert list(emails) == ["ada@example.com", "grace@example.com"]
    assert Membership.objects.filter(tenant=outsider_tenant).count() == 1
