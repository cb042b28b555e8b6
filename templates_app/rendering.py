"""Per-channel content: its shape, its validation, its context and its rendering.

The send pipeline renders inline content and stored versions through the same functions
(`validate_content`, `build_context`, `render_channel`), so both run in the same sandbox.
"""

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from django.template import TemplateSyntaxError
from rest_framework import serializers

from alertflow.channels import CHANNELS
from alertflow.errors import ApiError

from .sandbox import BudgetExceeded, Compiled, SandboxContext, compile_source

# The fields each channel's content may have, and the groups of which at least one field must be
# non-blank: both decided by the channel (alertflow/channels.py). `data` is an object whose
# string values are templates too; every other field is one template string.
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {name: c.content_fields for name, c in CHANNELS.items()}
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {name: c.required_content for name, c in CHANNELS.items()}
AUTOESCAPED = frozenset((name, escaped) for name, c in CHANNELS.items() for escaped in c.escaped_fields)
OBJECT_FIELDS = frozenset({"data"})
MAX_TEMPLATE_CHARS = 100_000
RESERVED_CONTEXT_KEYS = frozenset({"recipient", "tenant"})
RECIPIENT_FIELDS = ("id", "name", "email", "phone", "locale")
COMPILED_CACHE_SIZE = 4096


# --- validation -------------------------------------------------------------------------------


def validate_content(channels: dict) -> dict:
    """Check per-channel content and compile every template in it; return it normalised.

    Takes `{"email": {"subject", "html", "text"}, "sms": {"text"}, ...}` (any non-empty subset of
    channels). Raises DRF `ValidationError` whose detail mirrors the input, so a serializer field
    holding it names the culprit: `channels: email: subject: The {% load %} tag is not allowed`.
    Returns the content with channels in canonical order and null fields dropped.
    """
    if not isinstance(channels, dict):
        raise serializers.ValidationError("Must be an object of channel name to content.")
    if not channels:
        raise serializers.ValidationError(f"Define content for at least one channel ({', '.join(CHANNEL_FIELDS)}).")
    errors: dict = {}
    for name in channels:
        if name not in CHANNEL_FIELDS:
            errors[name] = [f"Unknown channel {name!r}; expected one of {', '.join(CHANNEL_FIELDS)}."]
    clean: dict = {}
    for channel in CHANNEL_FIELDS:
        if channel in channels:
            content, problems = _validate_channel(channel, channels[channel])
            if problems:
                errors[channel] = problems
            clean[channel] = content
    if errors:
        raise serializers.ValidationError(errors)
    return clean


def _validate_channel(channel: str, content) -> tuple[dict, dict | list]:
    allowed = CHANNEL_FIELDS[channel]
    if not isinstance(content, dict):
        return {}, [f"Must be an object with the {channel} fields: {', '.join(allowed)}."]
    errors: dict = {}
    clean: dict = {}
    for name, value in content.items():
        if name not in allowed:
            errors[name] = [f"Unknown field {name!r} for {channel}; expected {', '.join(allowed)}."]
        elif value is None:
            continue
        elif name in OBJECT_FIELDS:
            if not isinstance(value, dict):
                errors[name] = ["Must be an object."]
                continue
            inner = {key: problem for key, text in value.items() if isinstance(text, str) and (problem := _check(text))}
            if inner:
                errors[name] = inner
            clean[name] = value
        elif not isinstance(value, str):
            errors[name] = ["Must be a string."]
        elif problem := _check(value):
            errors[name] = problem
        else:
            clean[name] = value
    for group in REQUIRED[channel]:
        if not any(str(content.get(name) or "").strip() for name in group) and not any(n in errors for n in group):
            wanted = group[0] if len(group) == 1 else " or ".join(group)
            errors[group[0]] = [f"This channel needs {wanted}."]
    return clean, errors


def _check(source: str) -> list[str] | None:
    if len(source) > MAX_TEMPLATE_CHARS:
        return [f"Ensure this field has no more than {MAX_TEMPLATE_CHARS} characters."]
    if "{" not in source:
        return None  # plain text: no tag, variable or comment to compile
    try:
        # Through the cache the renderer uses for inline content: a send repeating the same
        # content (most do: the varying part is in `data`) is compiled once per process.
        compiled_cache.get(("src", source), source)
    except TemplateSyntaxError as exc:
        return [f"Template error: {exc}"]
    return None


# --- context ----------------------------------------------------------------------------------


def _refuse(self, *args, **kwargs):
    raise TypeError("template data is read-only")


# Django calls zero-argument methods it finds by attribute lookup, but never ones marked
# `alters_data`: so `{{ data.clear }}` or `{{ items.pop }}` cannot change what later fields,
# channels or recipients see.
_refuse.alters_data = True


class ReadOnlyDict(dict):
    __slots__ = ()
    clear = pop = popitem = setdefault = update = _refuse


class ReadOnlyList(list):
    __slots__ = ()
    append = clear = extend = insert = pop = remove = reverse = sort = _refuse


def plain(value):
    """A copy of `value` made only of read-only dicts and lists, str, int, float and bool.

    Anything else (a model instance, a date, a lazy or "safe" string) becomes its text, so no
    template can reach an object's attributes or skip escaping. None becomes "" so that a null
    in the data renders as nothing rather than as "None".
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return value
    if value is None:
        return ""
    if isinstance(value, dict):
        return ReadOnlyDict({str(key): plain(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return ReadOnlyList(plain(item) for item in value)
    return str(value)[:]  # slicing turns a str subclass (SafeString) into a plain str


def build_context(tenant_name: str, recipient: dict | None, data: dict | None) -> dict:
    """The render context: the request's `data` keys, plus `recipient` and `tenant`.

    `recipient` holds `id` (the tenant's external id), `name`, `email`, `phone`, `locale` when
    known, and `data` (always an object). Data keys cannot shadow `recipient` or `tenant`.
    """
    context = {str(key): plain(value) for key, value in (data or {}).items() if key not in RESERVED_CONTEXT_KEYS}
    recipient = recipient or {}
    person = ReadOnlyDict(
        {name: plain(recipient[name]) for name in RECIPIENT_FIELDS if recipient.get(name) not in (None, "")}
    )
    person["data"] = plain(recipient.get("data") or {})
    context["recipient"] = person
    context["tenant"] = ReadOnlyDict(name=str(tenant_name))
    return context


# --- rendering --------------------------------------------------------------------------------


class CompiledCache:
    """An in-process LRU of compiled templates, safe across threads (gthread workers).

    Keys identify immutable sources (a TemplateVersion id with channel and field, or the source
    text itself), so entries are never invalidated, only evicted.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, source: str) -> Compiled:
        with self._lock:
            compiled = self._items.get(key)
            if compiled is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return compiled
        compiled = compile_source(source)  # outside the lock: two threads may both compile once
        with self._lock:
            self.misses += 1
            self._items[key] = compiled
            if len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


compiled_cache = CompiledCache(COMPILED_CACHE_SIZE)


class RenderError(ApiError):
    """A template that compiled but failed while rendering (e.g. `divisibleby:0`): permanent."""

    code = "render_error"

    def __init__(self, field: str, problem: str, details: dict | None = None):
        super().__init__(400, self.code, f"{field}: {problem}", {"field": field, **(details or {})})
        self.field = field


class RenderTooExpensive(RenderError):
    """A render that went past a cost limit (sandbox.RenderBudget): permanent, since the same
    template and data would again. `str()` leads with the code, so a dead-lettered message's
    error reads `render_failed: render_too_expensive: sms.text: ...`."""

    code = "render_too_expensive"

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(slots=True)
class RenderResult:
    fields: dict
    missing: list[str] = field(default_factory=list)


def render_channel(
    content_for_channel: dict,
    channel: str,
    context: dict,
    cache_key: Hashable = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> RenderResult:
    """Render one channel's content (already validated) against a `build_context` context.

    `cache_key` must identify immutable content (a TemplateVersion's id); without one the
    compiled templates are cached by their source text. Returns the rendered fields (the `data`
    object rendered value by value) and the variables referenced but absent from the context.
    Raises RenderError naming the field; RenderTooExpensive when the render, all fields together,
    goes past the ALERTFLOW_RENDER_MAX_* limits. Exceptions of the `passthrough` types are
    raised unchanged: a worker passes its time limit and shutdown, which may land in the middle
    of a render and are not the template's fault.
    """
    ctx = SandboxContext(context)
    fields: dict = {}
    missing: dict[str, None] = {}

    def render(source: str, name: str) -> str:
        if "{" not in source:
            return source  # plain text: nothing to compile or escape
        key = ("src", source) if cache_key is None else (cache_key, channel, name)
        try:
            compiled = compiled_cache.get(key, source)
            ctx.autoescape = (channel, name) in AUTOESCAPED
            output = compiled.template.render(ctx)
        except passthrough:
            raise
        except BudgetExceeded as exc:
            details = {"limit": exc.limit, "max": exc.maximum}
            raise RenderTooExpensive(f"{channel}.{name}", str(exc), details) from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"{channel}.{name}", f"Template error: {exc}") from exc
        except Exception as exc:  # a filter raising on the tenant's data: report, never a 500
            raise RenderError(f"{channel}.{name}", f"Rendering failed: {exc}") from exc
        for var, lookups in compiled.variables:
            if var not in missing and not resolvable(context, lookups):
                missing[var] = None
        return str(output)[:]

    for name, value in content_for_channel.items():
        if isinstance(value, str):
            fields[name] = render(value, name)
        elif name in OBJECT_FIELDS and isinstance(value, dict):
            fields[name] = {k: render(v, f"{name}.{k}") if isinstance(v, str) else v for k, v in value.items()}
        else:
            fields[name] = value
    return RenderResult(fields=fields, missing=list(missing))


def resolvable(context: dict, lookups: tuple[str, ...]) -> bool:
    """Whether Django's lookup (key, then attribute, then index) would find `a.b.0` in plain data."""
    current = context
    for bit in lookups:
        if isinstance(current, dict) and bit in current:
            current = current[bit]
        elif hasattr(current, bit):
            current = getattr(current, bit)
        elif isinstance(current, list) and bit.lstrip("-").isdigit() and -len(current) <= int(bit) < len(current):
            current = current[int(bit)]
        else:
            return False
    return True
