"""Queue templated emails in django-post_office, as an application using it would: one
`EmailTemplate`, then `mail.send_many` (one `bulk_create`) with a context per recipient, rendered
at delivery like AlertFlow's. Run by bench.postoffice in a child process with
`DJANGO_SETTINGS_MODULE=bench.postoffice_settings`:

    python -m bench.postoffice_enqueue COUNT
"""

import sys

import django

from .client import address
from .smtp import BENCH_HEADER, FROM_EMAIL


def main(count: int) -> None:
    django.setup()
    from post_office import mail
    from post_office.models import EmailTemplate

    template = EmailTemplate.objects.create(name="bench", subject="Bench {{ recipient_id }}", content="Hello.")
    mail.send_many(
        [
            {
                "sender": FROM_EMAIL,
                "recipients": [address(f"r{i:06d}")],
                "template": template,
                "context": {"recipient_id": f"r{i:06d}"},
                "render_on_delivery": True,
                "headers": {BENCH_HEADER.decode(): f"postoffice-{i}"},
            }
            for i in range(count)
        ]
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
