"""What the API's serializers share beyond DRF."""

import copy


class ShallowCopiedFields:
    """Give each serializer instance shallow copies of the declared fields, not deep ones.

    DRF deep-copies every declared field for every serializer instance, and a field's deepcopy
    re-runs its `__init__` (and its child's): for SendSerializer that was 0.6-0.7 ms of CPU on
    each accepted send, more than the validation itself. `bind()` then sets the copy's name and
    parent; everything else a field holds (validators, choices, a list's child) is only read
    while validating, so the copies can share it.

    Only for serializers of plain fields: no nested serializer (its own fields would be
    shared), and no code that changes a field per instance. A field that keeps state of its own
    (a cached_property) is named in `deep_copied_fields` and copied as DRF does.
    """

    deep_copied_fields: tuple[str, ...] = ()

    def get_fields(self):
        return {
            name: copy.deepcopy(field) if name in self.deep_copied_fields else copy.copy(field)
            for name, field in self._declared_fields.items()
        }
