import threading

import pytest
from django.db import connection

from templates_app import services
from tests.factories import TemplateFactory


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_get_consecutive_versions():
    template = TemplateFactory(code="t")
    errors = []

    def put(n):
        try:
            services.update_template(template, channels={"sms": {"text": f"writer {n}"}})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=put, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    template.refresh_from_db()
    assert template.version == 7
    assert sorted(template.versions.values_list("number", flat=True)) == list(range(1, 8))
