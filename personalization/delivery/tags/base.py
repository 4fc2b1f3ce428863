"""What every delivery tag node shares: argument parsing, hydration placeholders and the fallback on errors.

A node renders server-side, or (``hydrate=True`` or ``PERSONALIZATION["HYDRATE"]``) a placeholder holding its default
content that hydrate.js replaces with the API's rendering of the same node. Any error renders the default content.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from personalization.conf import settings

logger = logging.getLogger("personalization.templatetags")

LIVE = "_personalization_live"  # set by the API: render for real, never a placeholder
INSIDE = "_personalization_placeholder"  # inside a placeholder's default content: no nested placeholders
FALSE = (False, "false", "False", "0", 0)


def parse_args(parser: template.base.Parser, bits: list[str], tag: str, *, positional: int,
               allowed: set[str]) -> tuple[list[Any], dict[str, Any], str | None]:
    """Positional args, keyword args (``key=value``) and the ``as name`` of a tag."""
    as_var = None
    if len(bits) >= 2 and bits[-2] == "as":
        as_var = bits[-1]
        bits = bits[:-2]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for bit in bits:
        kw = template.base.kwarg_re.match(bit)
        if kw and kw.group(1):
            name, value = kw.groups()
            if name not in allowed:
                raise template.TemplateSyntaxError(
                    f"{{% {tag} %}} got an unknown argument {name!r}; accepted: {', '.join(sorted(allowed))}."
                )
            kwargs[name] = parser.compile_filter(value)
        elif kwargs:
            raise template.TemplateSyntaxError(f"{{% {tag} %}}: positional argument {bit!r} after keywords.")
        else:
            args.append(parser.compile_filter(bit))
    if len(args) != positional:
        raise template.TemplateSyntaxError(f"{{% {tag} %}} takes {positional} positional argument(s), got {len(args)}.")
    return args, kwargs, as_var


def resolve(value: Any, context: template.Context, default: Any = None) -> Any:
    """The value of an argument in ``context``; ``default`` when it is missing, empty or fails to resolve."""
    if value is None:
        return default
    try:
        resolved = value.resolve(context)
    except Exception:  # noqa: BLE001
        return default
    return default if resolved is None or resolved == "" else resolved


def literal(value: Any) -> Any:
    """The value of a constant argument (None for a variable that needs a context)."""
    if value is None or not isinstance(getattr(value, "var", None), str):
        return None
    return value.var


def as_int(value: Any, default: int | None, low: int = 1, high: int = 100) -> int | None:
    """``value`` as an int within ``low..high``; ``default`` when it is not a number."""
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default


def request_of(context: template.Context) -> Any:
    """The context's request (None without one, or with something that is not a request)."""
    request = context.get("request")
    return request if hasattr(request, "META") else None


class DeliveryNode(template.Node):
    """Server rendering, hydration placeholders and error fallback shared by the personalization block tags."""

    tag_name = ""
    kwargs: dict[str, Any]
    child_nodelists: tuple[str, ...] = ()

    def hydrating(self, context: template.Context) -> bool:
        if context.get(LIVE):
            return False
        wanted = resolve(self.kwargs.get("hydrate"), context)
        return bool(settings.HYDRATE) if wanted is None else wanted not in FALSE

    def render(self, context: template.Context) -> str:
        try:
            if context.get(INSIDE):
                return self.render_default(context)
            if self.hydrating(context):
                return self.render_placeholder(context)
            return self.render_live(context)
        except Exception:  # noqa: BLE001 - a template tag never breaks a page
            logger.exception("personalization: {%% %s %%} failed; rendering its default content", self.tag_name)
            try:
                return self.render_default(context)
            except Exception:  # noqa: BLE001
                logger.exception("personalization: the default content of {%% %s %%} failed", self.tag_name)
                return ""

    def render_placeholder(self, context: template.Context) -> str:
        spec = self.spec(context)
        with context.push({INSIDE: True}):
            default = self.render_default(context)
        origin = getattr(getattr(self, "origin", None), "template_name", None) or ""
        return format_html('<div data-personalization-hydrate="{}" data-personalization-template="{}">{}</div>',
                           spec, origin, mark_safe(default))

    def spec(self, context: template.Context) -> str:
        """The placeholder's slot spec, which the page API matches to this node."""
        raise NotImplementedError

    def render_live(self, context: template.Context) -> str:
        raise NotImplementedError

    def render_default(self, context: template.Context) -> str:
        raise NotImplementedError
