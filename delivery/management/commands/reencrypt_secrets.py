"""`manage.py reencrypt_secrets`: the last step of an encryption key rotation (delivery/crypto.py).

List the new key first in ALERTFLOW_ENCRYPTION_KEY with the old ones after it, deploy, run this,
then drop the old keys. Safe to run again, and while the API serves: a secret written meanwhile is
already under the new key.
"""

from django.core.management.base import BaseCommand, CommandError

from delivery import crypto
from delivery.providers import reencrypt_secrets


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (providers, webhook endpoints, inbox secrets) under the first key."

    def handle(self, *args, **options):
        try:
            count = reencrypt_secrets()
        except crypto.SecretsUnreadable as exc:
            raise CommandError(
                f"{exc} Nothing after it was rewritten: add the key that opens it and run again."
            ) from None
        self.stdout.write(f"Re-encrypted {count} stored secret(s) under the first key.")
