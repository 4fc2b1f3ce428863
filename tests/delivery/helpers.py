"""Small readers of the tags' markup."""

import re

from django.template import Context, RequestContext, Template


def render(source, request=None, **context):
    template = Template("{% load personalization %}" + source)
    ctx = RequestContext(request, context) if request is not None else Context(context)
    return template.render(ctx)


def slot_items(html, slot):
    """Item keys (in order, once each) inside the wrapper of ``slot``."""
    m = re.search(rf'<div data-personalization-slot="{re.escape(slot)}" data-recommendation-id="([0-9a-f]+)">', html)
    assert m, f"no slot {slot!r} in the page"
    start = m.end()
    depth, i = 1, start
    for tag in re.finditer(r"<(/?)div\b", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            i = start + tag.start()
            break
    inner = html[start:i]
    return list(dict.fromkeys(re.findall(r'data-personalization-item="([^"]+)"', inner)))


def positions(html):
    return [int(p) for p in re.findall(r'data-personalization-position="(\d+)"', html)]


def variant(html, block="hero"):
    m = re.search(rf'data-personalization-block="{block}" data-personalization-variant="([^"]+)"', html)
    return m.group(1) if m else None


def sections(html, layout="homepage"):
    start = html.index(f'data-personalization-layout="{layout}"')
    return re.findall(r'data-personalization-section="([^"]+)"', html[start:])
