"""Serializers that take shallow copies of their declared fields (alertflow/serializers.py)."""

import threading

from rest_framework import serializers

from alertflow.serializers import ShallowCopiedFields
from notifications.serializers import SendSerializer
from tenants.models import Tenant

CONTENT = {"email": {"subject": "Hi {{ recipient.id }}", "text": "Hello."}}


def all_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def test_each_serializer_binds_its_own_copies_and_leaves_the_declared_fields_alone():
    first, second = SendSerializer(data={}), SendSerializer(data={})

    for name, declared in SendSerializer._declared_fields.items():
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
        assert first.fields[name].field_name == name
        assert getattr(declared, "parent", None) is None  # never bound itself


def test_no_shallow_copied_serializer_declares_a_nested_serializer():
    # A nested serializer's own fields would be shared between the copies.
    for cls in all_subclasses(ShallowCopiedFields):
        nested = [name for name, f in cls._declared_fields.items() if isinstance(f, serializers.BaseSerializer)]
        assert nested == [], f"{cls.__name__}: {nested}"


def test_concurrent_validations_keep_their_own_values_and_errors():
    tenant = Tenant(name="t")
    results: dict[int, object] = {}
    start = threading.Barrier(8)

    def validate(n: int) -> None:
        start.wait()
        for _ in range(50):
            body = {"recipient": f"r{n}", "channels": ["email"], "content": CONTENT}
            if n % 2:
                body["priority"] = "urgent-ish"  # not a priority
            serializer = SendSerializer(data=body, context={"tenant": tenant})
            ok = serializer.is_valid()
            results[n] = serializer.validated_data["recipient"] if ok else sorted(serializer.errors)

    threads = [threading.Thread(target=validate, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {n: (["priority"] if n % 2 else f"r{n}") for n in range(8)}
