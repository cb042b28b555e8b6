"""Posting an admin page back as a browser would: the operator console's form tests."""

from django.forms import MultiWidget


def form_data(page) -> dict:
    """What a browser would post back from an admin change (or add) page, as it was drawn."""
    forms = [page.context["adminform"].form]
    forms += [inline.formset.management_form for inline in page.context["inline_admin_formsets"]]
    data = {}
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field.widget, MultiWidget):  # a date and a time (SplitDateTimeWidget)
                data.update(
                    {f"{form.add_prefix(name)}_{i}": part for i, part in enumerate(field.widget.decompress(value))}
                )
            elif value is not None:
                data[form.add_prefix(name)] = value
    return data


def save(console, url, **changes):
    """Post the page at `url` back with `changes`; return the response (302 when saved)."""
    return console.post(url, {**form_data(console.get(url)), **changes})


def errors_of(response) -> dict:
    return response.context["adminform"].form.errors
