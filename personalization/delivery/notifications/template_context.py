"""What a notification's subject and templates may see: a whitelist (the first name, the items, the links, the
site) and nothing else, so a rule written in the admin cannot put a password hash or an email address into a
message.

:func:`message_context` builds the only context a message is rendered with; :func:`disallowed_variables` lists the
variables of a template outside the whitelist (the admin form rejects them with a field error).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.template import Template
from django.template.base import FilterExpression, Node, Variable

#: Every name a message template may use; ``user`` holds only ``first_name`` (``{{ user.first_name }}``).
ALLOWED = {
    "first_name": "the user's first name ('' when unknown)",
    "user": "only user.first_name",
    "items": "the items: key, title, url, image, price, category, reason",
    "item": "the first item",
    "trigger": "the rule's trigger name",
    "site_url": "SITE_URL",
    "site_name": "the host name of SITE_URL",
    "opt_out_url": "the one-click opt-out link",
    "open_url": "the open-tracking pixel",
}
_USER_FIELDS = {"first_name"}
_TEMPLATE_NAMES = {"forloop", "block", "True", "False", "None"}
_NODE_SKIP = {"origin", "token"}  # where a node came from, not what it reads
_CONDITION_MODULES = {"django.template.smartif", "django.template.defaulttags"}


def message_context(*, user: Any, items: list[dict[str, Any]], trigger: str, site_url: str, opt_out_url: str,
                    open_url: str) -> dict[str, Any]:
    """The whole context of one message: whitelisted values only (never the user object)."""
    first_name = str(getattr(user, "first_name", "") or "")
    return {
        "first_name": first_name, "user": {"first_name": first_name},
        "items": items, "item": items[0] if items else None, "trigger": trigger,
        "site_url": site_url, "site_name": urlsplit(site_url).hostname or "",
        "opt_out_url": opt_out_url, "open_url": open_url,
    }


def disallowed_variables(template: Template) -> list[str]:
    """The variables ``template`` uses outside the whitelist (names bound by ``for`` / ``with`` count as allowed),
    in order of appearance, each once."""
    bound: set[str] = set()
    found: list[str] = []
    for var in _variables(template.nodelist, bound):
        if var.literal is not None or var.lookups is None:
            continue  # a string or number literal
        root, path = var.lookups[0], var.lookups[1:]
        if root in bound or root in _TEMPLATE_NAMES:
            continue
        if root not in ALLOWED or (root == "user" and (not path or path[0] not in _USER_FIELDS)):
            text = ".".join(var.lookups)
            if text not in found:
                found.append(text)
    return found


def _variables(nodes: Any, bound: set[str]) -> list[Variable]:
    """Every :class:`Variable` reachable from ``nodes``: in variable nodes, filter arguments and tag arguments."""
    out: list[Variable] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, Variable):
            out.append(value)
        elif isinstance(value, FilterExpression):
            walk(value.var)
            for _func, args in value.filters:
                for lookup, arg in args:
                    if lookup:
                        walk(arg)
        elif isinstance(value, Node):
            for name in getattr(value, "loopvars", None) or ():  # {% for x in ... %}
                bound.add(name)
            extra = getattr(value, "extra_context", None)  # {% with x=... %}
            if isinstance(extra, dict):
                bound.update(str(k) for k in extra)
            target = getattr(value, "target_var", None)  # {% ... as x %}
            if isinstance(target, str):
                bound.add(target)
            for name, attr in vars(value).items():
                if name not in _NODE_SKIP:
                    walk(attr)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif type(value).__module__ in _CONDITION_MODULES and hasattr(value, "__dict__"):
            for attr in vars(value).values():  # the operands of an {% if %} condition
                walk(attr)

    walk(nodes)
    return out
