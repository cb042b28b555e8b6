"""Serializers that take shallow copies of their declared fields (alertflow/serializers.py)."""

import threading

from django.utils.functional import cached_property
from rest_framework import serializers

import notifications.serializers
from alertflow.serializers import ShallowCopiedFields
from notifications.serializers import SendSerializer
from preferences.serializers import RecipientSerializer
from tenants.models import Tenant

CONTENT = {"email": {"subject": "Hi {{ recipient.id }}", "text": "Hello."}}


def all_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def run_in_threads(targets) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_each_serializer_binds_its_own_copies_and_leaves_the_declared_fields_alone():
    first, second = SendSerializer(data={}), SendSerializer(data={})

    for name, declared in SendSerializer._declared_fields.items():
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
        assert first.fields[name].field_name == name
        assert getattr(declared, "parent", None) is None  # never bound itself
        if hasattr(declared, "child"):  # a list's or dict's: its own too, under its own parent
            assert first.fields[name].child is not second.fields[name].child
            assert first.fields[name].child.parent is first.fields[name]
            assert declared.child.parent is declared


def test_no_shallow_copied_serializer_declares_a_nested_serializer():
    # A nested serializer's own fields would be shared between the copies.
    for cls in all_subclasses(ShallowCopiedFields):
        nested = [name for name, f in cls._declared_fields.items() if isinstance(f, serializers.BaseSerializer)]
        assert nested == [], f"{cls.__name__}: {nested}"


def test_no_shallow_copied_serializer_declares_a_field_that_caches_on_itself():
    # Its copies would share the cache: what a field keeps for one request goes in the context.
    for cls in all_subclasses(ShallowCopiedFields):
        for name, declared in cls._declared_fields.items():
            for field in (declared, getattr(declared, "child", None)):
                kinds = type(field).__mro__ if field is not None else ()
                cached = [k for kind in kinds for k, v in vars(kind).items() if isinstance(v, cached_property)]
                assert cached == [], f"{cls.__name__}.{name}: {cached}"


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

    run_in_threads([lambda n=n: validate(n) for n in range(8)])

    assert results == {n: (["priority"] if n % 2 else f"r{n}") for n in range(8)}


def test_a_bulk_list_of_objects_validates_with_one_contact_serializer_per_request(tenant, monkeypatch):
    # Building one deep-copies its fields (~0.5 ms): one per object made 10,000 objects cost 5 s.
    used: dict[tuple[int, int], set[int]] = {}  # (thread, request) -> the serializers it used

    class CountingRecipientSerializer(RecipientSerializer):
        def run_validation(self, data):
            used.setdefault((threading.get_ident(), request.n), set()).add(id(self))
            return super().run_validation(data)

    monkeypatch.setattr(notifications.serializers, "RecipientSerializer", CountingRecipientSerializer)
    request = threading.local()
    objects = [{"id": f"r{n}", "email": f"r{n}@example.com"} for n in range(20)]
    start = threading.Barrier(4)
    kept = []  # every serializer stays alive, so no two can have the same id()

    def send_twice() -> None:
        start.wait()
        for n in range(2):
            request.n = n
            body = {"recipients": objects, "channels": ["email"], "content": CONTENT}
            serializer = SendSerializer(data=body, context={"tenant": tenant})
            assert serializer.is_valid(), serializer.errors
            kept.append(serializer)

    run_in_threads([send_twice] * 4)

    assert len(kept) == 8
    assert len(used) == 8 and all(len(serializers) == 1 for serializers in used.values())
    assert len(set().union(*used.values())) == 8  # no two requests share one
