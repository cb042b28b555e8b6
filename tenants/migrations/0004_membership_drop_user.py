# Schema step 3 of 3: memberships no longer point at Django users; an email is unique per tenant.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_membership_identity_data"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="membership",
            name="membership_unique_user",
        ),
        migrations.RemoveField(
            model_name="membership",
            name="user",
        ),
        migrations.AddConstraint(
            model_name="membership",
            constraint=models.UniqueConstraint(fields=("tenant", "email"), name="membership_unique_email"),
        ),
    ]
