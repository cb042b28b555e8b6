"""What the API's serializers share beyond DRF."""


def shallow_copy(field):
    """`copy.copy(field)` for a DRF field, without copy's generic path (`__reduce_ex__`,
    copyreg), which is two thirds of its cost: the same new instance and the same attributes."""
    cls = type(field)
    clone = cls.__new__(cls)
    clone.__dict__.update(field.__dict__)
    return clone


class ShallowCopiedFields:
    """Give each serializer instance shallow copies of the declared fields, not deep ones.

    DRF deep-copies every declared field for every serializer instance, and a field's deepcopy
    re-runs its `__init__` (and its child's): for SendSerializer that was 0.6-0.7 ms of CPU on
    each accepted send, more than the validation itself. `bind()` then sets the copy's name and
    parent; everything else a field holds (validators, choices) is only read while validating,
    so the copies can share it. A list's or dict's child is copied too, with the copy as its
    parent: the declared field's child has the declared field as its root, where `self.context`
    is empty, not the serializer's.

    Only for serializers of plain fields: no nested serializer (its own fields would be
    shared), and no field that keeps state of its own (a cached_property): what a field keeps
    for one request goes in `self.context`, which is the request's (as `RecipientTarget` does).
    """

    def get_fields(self):
        fields = {}
        for name, declared in self._declared_fields.items():
            field = fields[name] = shallow_copy(declared)
            child = getattr(declared, "child", None)
            if child is not None:
                # Already bound by the declared field (name, source), all but its parent.
                field.child = shallow_copy(child)
                field.child.parent = field
        return fields
