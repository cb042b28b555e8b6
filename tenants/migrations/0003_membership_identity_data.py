# Data step: each membership gets its own copy of its user's email, name and password hash, so
# every member logs in as before. The Django users stay (operators may use them in the admin).

from django.conf import settings
from django.db import migrations


def copy_identities(apps, schema_editor):
    Membership = apps.get_model("tenants", "Membership")
    for membership in Membership.objects.select_related("user").iterator():
        user = membership.user
        membership.email = user.email.strip().lower()
        membership.name = f"{user.first_name} {user.last_name}".strip()[:150]
        membership.password = user.password
        membership.save(update_fields=["email", "name", "password"])


def link_users(apps, schema_editor):
    """Backwards: one Django user per email, as before (the first membership's password wins)."""
    Membership = apps.get_model("tenants", "Membership")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    for membership in Membership.objects.order_by("id").iterator():
        user = User.objects.filter(email__iexact=membership.email).first()
        if user is None:
            user = User.objects.create(
                username=membership.email,
                email=membership.email,
                first_name=membership.name,
                password=membership.password,
            )
        membership.user = user
        membership.save(update_fields=["user"])


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0002_membership_identity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(copy_identities, link_users)]
