"""The locked-down Django template engine that renders tenant-authored content.

Tenants write templates; AlertFlow renders them in shared workers. So the engine here is not the
project's `TEMPLATES` engine: it has no loaders (no `{% include %}`/`{% extends %}` can read a
file), no libraries (no `{% load %}`), and only an allow-listed set of tags and filters (no
`{% debug %}`, `{% url %}`, `{% csrf_token %}`, `{% lorem %}`). Contexts are built from plain
data only (see `rendering.build_context`), so there is no object whose attributes lead anywhere.
"""

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.template import Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
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
    except TemplateSyntaxError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:  # odd literals, e.g. huge numbers
        raise TemplateSyntaxError(str(exc)) from exc
    return Compiled(template=template, variables=referenced_variables(template.nodelist))


def check_tags(source: str) -> None:
    """Refuse tags outside the allow-list by name, before the parser says something vaguer."""
    for token in Lexer(source).tokenize():
        if token.token_type is not TokenType.BLOCK:
            continue
        words = token.contents.split()
        if not words:
            continue  # the parser reports the empty tag
        word = words[0]
        if word not in ALLOWED_TAGS and word not in CONTINUATION_WORDS:
            raise TemplateSyntaxError(f"The {{% {word} %}} tag is not allowed in templates (line {token.lineno}).")


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
