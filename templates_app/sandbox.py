"""The locked-down Django template engine that renders tenant-authored content.

Tenants write templates; AlertFlow renders them in shared workers. So the engine here is not the
project's `TEMPLATES` engine: it has no loaders (no `{% include %}`/`{% extends %}` can read a
file), no libraries (no `{% load %}`), and only an allow-listed set of tags and filters (no
`{% debug %}`, `{% url %}`, `{% csrf_token %}`, `{% lorem %}`). Contexts are built from plain
data only (see `rendering.build_context`), so there is no object whose attributes lead anywhere.

Work is bounded too. Blocks nest at most ALERTFLOW_TEMPLATE_MAX_NESTING deep (checked before
parsing: Django's parser and renderer recurse per level). Every render runs against a
`RenderBudget` carried by its `SandboxContext`: `{% for %}` charges its length before it loops
(three nested loops over 300 characters would be 27 million iterations), every node checks the
clock, and the text nodes produce is counted, so one render cannot run away with a shared
process. Going past a limit raises `BudgetExceeded`.
"""

import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Lexer, TokenType, Variable, VariableNode
from django.template.defaulttags import (
    CycleNode,
    FilterNode,
    FirstOfNode,
    ForNode,
    IfChangedNode,
    IfNode,
    NowNode,
    RegroupNode,
    WidthRatioNode,
    WithNode,
)

ALLOWED_TAGS = frozenset(
    {
        "autoescape",
        "comment",
        "cycle",
        "filter",
        "firstof",
        "for",
        "if",
        "ifchanged",
        "now",
        "regroup",
        "resetcycle",
        "spaceless",
        "templatetag",
        "verbatim",
        "widthratio",
        "with",
    }
)
# Words that continue or close an allowed tag rather than open one.
CONTINUATION_WORDS = frozenset({"else", "elif", "empty"}) | {f"end{tag}" for tag in ALLOWED_TAGS}
# The allowed tags that open a block closed by `end<tag>`: what nesting counts.
BLOCK_TAGS = frozenset({"autoescape", "comment", "filter", "for", "if", "ifchanged", "spaceless", "verbatim", "with"})
# Django parses `{% if not not ... x %}` recursively and evaluates `a or b or ...` as a tree as
# deep as the chain: conditions longer than this are not templates anyone writes by hand.
MAX_CONDITION_WORDS = 100

# pprint is left out (a debugging aid), and so is every filter Django adds in a future release
# until someone reads it: this is an allow-list on purpose.
ALLOWED_FILTERS = frozenset(
    {
        "add",
        "addslashes",
        "capfirst",
        "cut",
        "date",
        "default",
        "default_if_none",
        "dictsort",
        "dictsortreversed",
        "divisibleby",
        "escape",
        "escapejs",
        "escapeseq",
        "filesizeformat",
        "first",
        "force_escape",
        "get_digit",
        "iriencode",
        "join",
        "json_script",
        "last",
        "length",
        "linebreaks",
        "linebreaksbr",
        "linenumbers",
        "lower",
        "make_list",
        "phone2numeric",
        "pluralize",
        "random",
        "safe",
        "safeseq",
        "slice",
        "slugify",
        "striptags",
        "time",
        "timesince",
        "timeuntil",
        "title",
        "truncatechars",
        "truncatechars_html",
        "truncatewords",
        "truncatewords_html",
        "unordered_list",
        "upper",
        "urlencode",
        "urlize",
        "urlizetrunc",
        "wordcount",
        "wordwrap",
        "yesno",
    }
)

# Padding and number formatting allocate whatever width the template asks for: one
# `{{ x|ljust:"2000000000" }}` would take a shared worker down. These versions are bounded.
MAX_WIDTH = 1000
MAX_DIGITS = 100

register = Library()
register.tags.update({name: defaulttags.register.tags[name] for name in ALLOWED_TAGS})
register.filters.update({name: defaultfilters.register.filters[name] for name in ALLOWED_FILTERS})


def _width(arg) -> int:
    return max(-MAX_WIDTH, min(int(arg), MAX_WIDTH))


@register.filter(is_safe=True)
@defaultfilters.stringfilter
def ljust(value, arg):
    return value.ljust(_width(arg))


@register.filter(is_safe=True)
@defaultfilters.stringfilter
def rjust(value, arg):
    return value.rjust(_width(arg))


@register.filter(is_safe=True)
@defaultfilters.stringfilter
def center(value, arg):
    return value.center(_width(arg))


@register.filter(is_safe=True)
def stringformat(value, arg):
    # "%2000000000s" or "%.2000000000f": refuse widths and precisions of more than 3 digits.
    if re.search(r"\d{4,}", str(arg)):
        return ""
    return defaultfilters.stringformat(value, arg)


@register.filter(is_safe=True, needs_autoescape=True)
def join(value, arg, autoescape=True):
    # `s|make_list|join:sep` is len(s) times the separator: size it before building it.
    try:
        items = list(value)
    except TypeError:
        return value  # as Django's join does for what is not a list
    size = sum(len(str(item)) for item in items) + len(str(arg)) * max(len(items) - 1, 0)
    limit = settings.ALERTFLOW_RENDER_MAX_OUTPUT_CHARS
    if size > limit:
        raise BudgetExceeded("output_chars", limit, f"join would build {size} characters; the limit is {limit}")
    return defaultfilters.join(items, arg, autoescape)


@register.filter(is_safe=True)
def floatformat(value, arg=-1):
    # Decimal("1e999999999") is 11 characters of data and a billion digits once formatted.
    try:
        number = Decimal(str(value))
        if number.is_finite() and abs(number.adjusted()) > MAX_DIGITS:
            return ""
    except (InvalidOperation, ValueError):
        pass
    digits = re.sub(r"\D", "", str(arg))
    if digits and int(digits) > MAX_DIGITS:
        return ""
    return defaultfilters.floatformat(value, arg)


class SandboxEngine(Engine):
    # Engine always prepends these (defaulttags brings {% load %}, {% url %}, {% debug %};
    # loader_tags brings {% include %}, {% extends %}); the sandbox library replaces all three.
    default_builtins = []

    def __init__(self):
        super().__init__(
            dirs=[],
            app_dirs=False,
            context_processors=[],
            debug=False,
            loaders=[],
            string_if_invalid="",
            libraries={},
            builtins=[],
            autoescape=True,
        )
        self.template_builtins = [register]


ENGINE = SandboxEngine()

# Names a template binds itself: loop variables, `with`, `as x`, and the literals Context adds.
ALWAYS_BOUND = frozenset({"forloop", "True", "False", "None"})


@dataclass(frozen=True, slots=True)
class Compiled:
    """A parsed template and the variables it needs from the context (for `missing`)."""

    template: Template
    # (name as written, lookups) of each variable referenced without a `default` filter.
    variables: tuple[tuple[str, tuple[str, ...]], ...]


def compile_source(source: str) -> Compiled:
    """Parse `source` in the sandbox. Raises TemplateSyntaxError with a message for a human."""
    check_tags(source)
    try:
        template = Template(source, engine=ENGINE)
        variables = referenced_variables(template.nodelist)
    except TemplateSyntaxError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:  # odd literals, e.g. huge numbers
        raise TemplateSyntaxError(str(exc)) from exc
    except RecursionError:  # check_tags bounds what is known to recurse; this is the backstop
        raise TemplateSyntaxError("The template is nested too deeply.") from None
    meter(template.nodelist)
    return Compiled(template=template, variables=variables)


def check_tags(source: str) -> None:
    """Refuse, before the parser says something vaguer (or recurses past Python's limit), tags
    outside the allow-list, blocks nested more than ALERTFLOW_TEMPLATE_MAX_NESTING deep and
    conditions of more than MAX_CONDITION_WORDS words."""
    max_nesting = settings.ALERTFLOW_TEMPLATE_MAX_NESTING
    depth = 0
    in_comment = False  # the parser skips what a comment holds, unbalanced or not
    for token in Lexer(source).tokenize():
        if token.token_type is not TokenType.BLOCK:
            continue
        words = token.contents.split()
        if not words:
            continue  # the parser reports the empty tag
        word = words[0]
        if word not in ALLOWED_TAGS and word not in CONTINUATION_WORDS:
            raise TemplateSyntaxError(f"The {{% {word} %}} tag is not allowed in templates (line {token.lineno}).")
        if in_comment:
            in_comment = word != "endcomment"
        elif word == "comment":
            in_comment = True
        elif word in BLOCK_TAGS:
            depth += 1
            if depth > max_nesting:
                raise TemplateSyntaxError(
                    f"Blocks are nested more than {max_nesting} blocks deep (line {token.lineno})."
                )
        elif word.startswith("end") and word[3:] in BLOCK_TAGS:
            depth = max(depth - 1, 0)  # an unbalanced end is the parser's to report
        if word in ("if", "elif") and len(words) > MAX_CONDITION_WORDS:
            raise TemplateSyntaxError(
                f"The condition on line {token.lineno} has more than {MAX_CONDITION_WORDS} words."
            )


# --- the cost of one render --------------------------------------------------------------------


class BudgetExceeded(Exception):
    """A render went past one of its limits: `limit` names it, `maximum` is its value."""

    def __init__(self, limit: str, maximum: int | float, message: str):
        super().__init__(message)
        self.limit = limit
        self.maximum = maximum


class RenderBudget:
    """What one render may still spend, from the ALERTFLOW_RENDER_MAX_* settings."""

    __slots__ = ("cpu_started", "iterations", "output", "wall_deadline")

    def __init__(self):
        self.iterations = settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS
        self.output = settings.ALERTFLOW_RENDER_MAX_OUTPUT_CHARS
        self.cpu_started = time.thread_time()
        self.wall_deadline = time.monotonic() + settings.ALERTFLOW_RENDER_MAX_SECONDS

    def spend_iterations(self, count: int) -> None:
        self.iterations -= count
        if self.iterations < 0:
            limit = settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS
            raise BudgetExceeded("loop_iterations", limit, f"the render went past {limit} loop iterations")

    def spend_output(self, count: int) -> None:
        self.output -= count
        if self.output < 0:
            limit = settings.ALERTFLOW_RENDER_MAX_OUTPUT_CHARS
            raise BudgetExceeded("output_chars", limit, f"the render went past {limit} characters of output")

    def check_time(self) -> None:
        # The limit is CPU time of this thread, so a busy machine does not fail a render that
        # merely waited for a core. Reading that clock is a system call (~2 us, ten times the
        # wall clock), and CPU time never runs ahead of wall time: so it is read only once the
        # wall clock has passed the limit.
        if time.monotonic() > self.wall_deadline:
            limit = settings.ALERTFLOW_RENDER_MAX_SECONDS
            if time.thread_time() - self.cpu_started > limit:
                raise BudgetExceeded("seconds", limit, f"the render went past {limit:g} seconds of CPU time")


class SandboxContext(Context):
    """The context of one render: it carries that render's budget, which the metered nodes
    spend from. A sandboxed template rendered with a plain Context fails on purpose."""

    def __init__(self, dict_=None, **kwargs):
        super().__init__(dict_, **kwargs)
        self.budget = RenderBudget()


class LoopSequence(FilterExpression):
    """A `{% for %}` loop's sequence that charges the loop's length before the loop runs."""

    __slots__ = ()

    def resolve(self, context, ignore_failures=False):
        values = super().resolve(context, ignore_failures)
        if values is not None:
            if not hasattr(values, "__len__"):
                values = list(values)  # as ForNode would
            context.budget.spend_iterations(len(values))
        return values


class MeteredNode:
    """Mixed into a block node: each render of it checks the clock."""

    def render_annotated(self, context):
        context.budget.check_time()
        return super().render_annotated(context)


class MeteredLeafNode:
    """Mixed into a node that produces text itself (text, variables, `cycle`, ...): each render
    checks the clock and counts its output. Blocks are not counted: their output is their
    children's, counted already."""

    def render_annotated(self, context):
        budget = context.budget
        budget.check_time()
        output = super().render_annotated(context)
        budget.spend_output(len(output))
        return output


_metered_classes: dict[tuple[type, bool], type] = {}


def meter(nodelist) -> None:
    """Make every node of a freshly parsed template spend from the render's budget.

    Django gives no hook around a node's render, so each node's class is swapped for a subclass
    adding one (made once per node class); the nodes are otherwise Django's own. `{% for %}`
    sequences become `LoopSequence`s the same way.
    """
    for node in nodelist:
        children = [getattr(node, attr, None) for attr in node.child_nodelists]
        leaf = not any(children)
        key = (type(node), leaf)
        if key not in _metered_classes:
            mixin = MeteredLeafNode if leaf else MeteredNode
            _metered_classes[key] = type(f"Metered{type(node).__name__}", (mixin, type(node)), {})
        node.__class__ = _metered_classes[key]
        if isinstance(node, ForNode):
            node.sequence.__class__ = LoopSequence
        for child in children:
            if child:
                meter(child)


def referenced_variables(nodelist) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every context variable the template reads and has no fallback for, in order, once each.

    Names the template binds itself (`{% for item in ... %}`, `{% with x=... %}`, `as x`) are
    left out wherever they appear: a simplification that can only under-report.
    """
    found: dict[str, tuple[str, ...]] = {}
    bound = set(ALWAYS_BOUND)

    def add(variable) -> None:
        if isinstance(variable, Variable) and variable.lookups:
            found.setdefault(variable.var, variable.lookups)

    def expression(expr, optional: bool = False, placeholder: bool = False) -> None:
        if not isinstance(expr, FilterExpression):
            return
        has_default = any(func is defaultfilters.default for func, _ in expr.filters)
        if not (optional or placeholder or has_default):
            add(expr.var)
        for _func, args in expr.filters:
            for lookup, arg in args:
                if lookup:
                    add(arg)

    def condition(cond) -> None:
        # smartif: TemplateLiteral has `.value`, operators have `.first` and `.second`.
        if cond is None:
            return
        expression(getattr(cond, "value", None))
        condition(getattr(cond, "first", None))
        condition(getattr(cond, "second", None))

    def visit(node) -> None:
        if isinstance(node, VariableNode):
            expression(node.filter_expression)
        elif isinstance(node, IfNode):
            for cond, _ in node.conditions_nodelists:
                condition(cond)
        elif isinstance(node, ForNode):
            bound.update(node.loopvars)
            expression(node.sequence)
        elif isinstance(node, WithNode):
            bound.update(node.extra_context)
            for expr in node.extra_context.values():
                expression(expr)
        elif isinstance(node, FirstOfNode):
            bound.add(node.asvar)
            for expr in node.vars:
                expression(expr, optional=True)  # firstof is a fallback chain by nature
        elif isinstance(node, CycleNode):
            bound.add(node.variable_name)
            for expr in node.cyclevars:
                expression(expr)
        elif isinstance(node, RegroupNode):
            bound.add(node.var_name)
            expression(node.target)
        elif isinstance(node, FilterNode):
            expression(node.filter_expr, placeholder=True)  # its variable is the block's output
        elif isinstance(node, IfChangedNode):
            for expr in node._varlist:
                expression(expr)
        elif isinstance(node, WidthRatioNode):
            bound.add(node.asvar)
            for expr in (node.val_expr, node.max_expr, node.max_width):
                expression(expr)
        elif isinstance(node, NowNode):
            bound.add(node.asvar)
        for attr in node.child_nodelists:
            for child in getattr(node, attr, None) or ():
                visit(child)

    for node in nodelist:
        visit(node)
    return tuple((name, lookups) for name, lookups in found.items() if lookups[0] not in bound)
