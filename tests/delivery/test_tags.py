"""The tags render server-side with the right items and tracking attributes, and fall back without raising."""

import re

import pytest
from django.test import RequestFactory

from tests.caches import clear_cache
from tests.delivery.helpers import positions, render, sections, slot_items, variant

pytestmark = pytest.mark.django_db

FAILING = "tests.delivery.failing.FailingCatalog"


def _existing(keys, n):
    from storefront_demo.shop.models import Product

    pks = {str(pk) for pk in Product.objects.values_list("pk", flat=True)}
    return [k for k in keys if k.split(":")[1] in pks][:n]


def _popular(n):
    from personalization.serving import recommend

    return _existing(recommend("v:nobody", n * 3).keys(), n)


def test_recommended_items_render_catalog_objects_with_slot_and_item_attributes(shop_history):
    html = render('{% recommended_items slot="home" limit=5 as picks %}'
                  '{% for item in picks %}<a {{ item.attrs }}>{{ item.object.name }}|{{ item.position }}|'
                  '{{ item.reason }}</a>{% endfor %}{% empty %}nothing{% endrecommended_items %}')
    assert slot_items(html, "home") == _popular(5)
    assert positions(html) == [1, 2, 3, 4, 5]
    assert "nothing" not in html
    from storefront_demo.shop.models import Product

    first = Product.objects.get(pk=_popular(1)[0].split(":")[1])
    assert f">{first.name}|1|popular</a>" in html


def test_slot_and_item_attrs_helpers_for_hand_written_markup(shop_history):
    html = render('{% recommended_items slot="home" limit=2 wrap=False %}<ul {% slot_attrs items %}>'
                  '{% for item in items %}<li {% item_attrs item %}>{{ item.key }}</li>{% endfor %}</ul>'
                  '{% endrecommended_items %}')
    assert re.search(r'<ul data-personalization-slot="home" data-recommendation-id="[0-9a-f]{32}">', html)
    assert "<div" not in html
    assert positions(html) == [1, 2]


def test_recommended_items_exclude_item_and_category(shop_history):
    from storefront_demo.shop.models import Product

    top = _popular(3)
    html = render('{% recommended_items slot="cart" exclude=cart limit=3 %}{% for i in items %}'
                  '<b {{ i.attrs }}></b>{% endfor %}{% endrecommended_items %}', cart=[top[0]])
    assert top[0] not in slot_items(html, "cart")
    html = render('{% recommended_items slot="x" category="mugs" limit=4 %}{% for i in items %}'
                  '<b {{ i.attrs }}></b>{% endfor %}{% endrecommended_items %}')
    keys = slot_items(html, "x")
    assert keys and {Product.objects.get(pk=k.split(":")[1]).category.slug for k in keys} == {"mugs"}


def test_similar_items_from_the_live_model_without_the_item_itself(trained):
    from personalization.serving import similar_items
    from storefront_demo.shop.models import Product

    product = Product.objects.order_by("pk")[3]
    expected = _existing([r.item for r in similar_items(product.item_key, 13) if r.item != product.item_key], 4)
    assert expected
    html = render('{% similar_items product limit=4 as items %}{% for i in items %}<b {{ i.attrs }}></b>'
                  '{% endfor %}{% endsimilar_items %}', product=product)
    assert slot_items(html, "similar") == expected
    # an item key works as well as the object
    html = render('{% similar_items key limit=4 %}{% for i in items %}<b {{ i.attrs }}></b>{% endfor %}'
                  '{% endsimilar_items %}', key=product.item_key)
    assert slot_items(html, "similar") == expected


def test_similar_items_are_logged_for_attribution_and_follow_the_slots_rules(
        trained, shopper, settings, django_capture_on_commit_callbacks):
    from django.core.cache import caches

    import personalization
    from personalization.models import RecommendationLog
    from storefront_demo.shop.models import Product

    product = Product.objects.order_by("pk")[3]
    source = ('{% similar_items product limit=4 %}{% for i in items %}<b {{ i.attrs }}></b>{% endfor %}'
              '{% endsimilar_items %}')
    request = RequestFactory().get("/")
    request.user = shopper
    with django_capture_on_commit_callbacks(execute=True):
        html = render(source, request=request, product=product)
    shown = slot_items(html, "similar")
    # the list's recommendation_id (which its impressions and clicks carry) names a logged list of the live model
    rec_id = re.search(r'data-personalization-slot="similar" data-recommendation-id="([0-9a-f]+)"', html).group(1)
    log = RecommendationLog.objects.get(pk=rec_id)
    assert (log.slot, log.subject, log.model_version_id, log.fallback) == ("similar", f"u:{shopper.pk}",
                                                                          trained.pk, "")
    assert [row["item"] for row in log.items][:4] == shown

    # the slot's rules apply: the tests' "similar" slot keeps the defaults (no purchased items), the demo's does not
    with django_capture_on_commit_callbacks(execute=True):
        personalization.track(shopper, "purchase", shown[0])
    request = RequestFactory().get("/")
    request.user = shopper
    assert shown[0] not in slot_items(render(source, request=request, product=product), "similar")
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"similar": {"exclude_purchased": False}}}
    clear_cache(caches["default"])  # lists cached under the old rules stand until they expire
    request = RequestFactory().get("/")
    request.user = shopper
    assert slot_items(render(source, request=request, product=product), "similar")[0] == shown[0]


def test_similar_items_without_a_model_fall_back_to_popular_items(shop_history):
    html = render('{% similar_items "product:1" limit=3 %}{% for i in items %}<b {{ i.attrs }}></b>{% endfor %}'
                  '{% endsimilar_items %}')
    assert slot_items(html, "similar") == [k for k in _popular(4) if k != "product:1"][:3]


def test_every_tag_falls_back_to_the_default_content_when_the_catalog_fails(shop_history, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "CATALOG_ADAPTER": FAILING}
    request = RequestFactory().get("/")
    html = render('{% recommended_items slot="home" %}ITEMS{% empty %}DEFAULT-ITEMS{% endrecommended_items %}'
                  '{% similar_items "product:1" %}ITEMS{% empty %}DEFAULT-SIMILAR{% endsimilar_items %}'
                  '{% personalized_block "hero" control=0 %}{% variant "first" %}FIRST'
                  '{% variant "c" category="candles" %}C{% endpersonalized_block %}'
                  '{% adaptive_layout "homepage" %}{% section "a" category="mugs" %}A'
                  '{% section "b" category="candles" %}B{% endadaptive_layout %}', request=request)
    assert "DEFAULT-ITEMS" in html and "DEFAULT-SIMILAR" in html
    assert "FIRST" in html or ">C<" in html  # the block still chooses (affinity is unknown, not an error)
    assert html.index(">A<") < html.index(">B<")


def test_a_failing_tag_renders_its_default_content(shop_history, monkeypatch):
    from personalization.delivery import blocks, item_lists, layouts

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(blocks, "choose_variant", broken)
    monkeypatch.setattr(layouts, "order_sections", broken)
    monkeypatch.setattr(item_lists, "recommended_items", broken)
    html = render('{% recommended_items slot="home" %}ITEMS{% empty %}DEFAULT{% endrecommended_items %}'
                  '{% personalized_block "hero" %}{% variant "first" %}FIRST{% variant "b" %}B'
                  '{% endpersonalized_block %}'
                  '{% adaptive_layout "l" %}{% section "a" %}A{% section "b" %}B2{% endadaptive_layout %}')
    assert html == "DEFAULTFIRSTAB2"


def test_tags_work_without_a_request_in_the_context(shop_history):
    html = render('{% recommended_items slot="home" limit=3 %}{% for i in items %}<b {{ i.attrs }}></b>'
                  '{% endfor %}{% endrecommended_items %}'
                  '{% personalized_block "hero" %}{% variant "a" %}A{% variant "b" %}B{% endpersonalized_block %}'
                  '{% adaptive_layout "homepage" %}{% section "x" %}X{% section "y" %}Y{% endadaptive_layout %}'
                  '{% tracking_script %}')
    assert slot_items(html, "home") == _popular(3)
    assert variant(html) in {"a", "b"}
    assert sections(html) == ["x", "y"]
    assert "tracker.js" in html and "hydrate.js" in html


def test_tags_work_with_a_request_without_the_middleware(shop_history):
    request = RequestFactory().get("/", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0")
    html = render('{% recommended_items slot="home" limit=2 %}{% for i in items %}<b {{ i.attrs }}></b>'
                  '{% endfor %}{% endrecommended_items %}', request=request)
    assert slot_items(html, "home") == _popular(2)


def test_bad_arguments_are_template_syntax_errors():
    from django.template import TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match="unknown argument 'limt'"):
        render('{% recommended_items limt=3 %}{% endrecommended_items %}')
    with pytest.raises(TemplateSyntaxError, match="1 positional"):
        render('{% similar_items limit=3 %}{% endsimilar_items %}')


def test_listed_objects_come_with_the_related_rows_the_catalog_fields_name(shop_history, django_assert_num_queries):
    """A card showing each item's category and brand costs no query per item (the N+1 a template author would hit)."""
    from personalization.catalog import get_catalog

    keys = _popular(6)
    objects = get_catalog().get_objects(keys)
    assert set(objects) == set(keys)
    with django_assert_num_queries(0):
        names = [(o.category.name, o.brand.name if o.brand_id else None) for o in objects.values()]
    assert all(category for category, _ in names)


def test_the_assignment_form_puts_the_list_in_a_variable(shop_history):
    html = render('{% recommended_items slot="home" limit=4 as items %}{{ items|length }}')
    assert html == "4"
    html = render('{% recommended_items slot="home" limit=3 as picks %}'
                  '<ul>{% for i in picks %}<li {{ i.attrs }}>{{ i.key }}</li>{% endfor %}</ul>')
    assert re.findall(r'data-personalization-item="([^"]+)"', html) == _popular(3)
    assert positions(html) == [1, 2, 3]
    html = render('{% similar_items "product:1" limit=2 as alike %}{% for i in alike %}{{ i.key }} {% endfor %}')
    assert html.split() == [k for k in _popular(3) if k != "product:1"][:2]


def test_the_assignment_and_block_forms_on_one_page(shop_history):
    top = _popular(14)
    html = render('{% recommended_items slot="home" limit=2 as first %}'
                  '{% recommended_items slot="cart" limit=3 as items %}<i>{{ items|length }}</i>'
                  '{% endrecommended_items %}'
                  '<p>{{ first|length }}</p>'
                  '{% recommended_items slot="x" limit=4 %}{% recommended_items slot="y" limit=1 as inner %}'
                  '<u>{{ inner.0.key }}|{{ items|length }}</u>{% endrecommended_items %}'
                  '{% similar_items "product:1" limit=2 as alike %}'
                  '{% for i in alike %}<s>{{ i.key }}</s>{% endfor %}{% endsimilar_items %}'
                  '{% similar_items "product:1" limit=1 as one %}<q>{{ one|length }}</q>')
    assert "<p>2</p>" in html
    assert 'data-personalization-slot="cart"' in html and "<i>3</i>" in html
    # one page, no item twice: first (2), cart (3) and x (4) come in turn, inner after x
    assert f"<u>{top[9]}|4</u>" in html and slot_items(html, "x") == []  # the body names no items itself
    assert re.findall(r"<s>([^<]+)</s>", html) == [k for k in top[10:] if k != "product:1"][:2]
    assert "<q>1</q>" in html


def test_the_assignment_form_inside_loops_and_same_name_blocks(shop_history):
    top = _popular(2)
    html = render('{% for n in "ab" %}{% recommended_items slot="home" limit=1 as picks %}{{ n }}{{ picks.0.key }};'
                  '{% endfor %}{% recommended_items slot="home" limit=2 as picks %}[{{ picks|length }}]'
                  '{% endrecommended_items %}')
    assert html.startswith(f"a{top[0]};b{top[1]};") and "[2]" in html  # a loop's second list skips the first's
    # a same-name block after an assignment: the end tag closes the block form
    html = render('{% recommended_items slot="home" limit=1 as a %}{{ a|length }}'
                  '{% recommended_items slot="home" limit=2 as b %}<{{ b|length }}>{% endrecommended_items %}')
    assert html.startswith("1") and "<2>" in html


def test_the_assignment_form_assigns_an_empty_list_on_a_cached_page(shop_history):
    html = render('{% recommended_items slot="home" limit=3 hydrate=True as items %}[{{ items|length }}]')
    assert html == "[0]"  # no placeholder: there is no body for hydrate.js to replace, nothing personal is cached


def test_the_assignment_form_falls_back_to_an_empty_list(shop_history, monkeypatch):
    from personalization.delivery import item_lists

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(item_lists, "recommended_items", broken)
    html = render('{% recommended_items slot="home" as items %}{% for i in items %}x{% empty %}none{% endfor %}')
    assert html == "none"


@pytest.mark.parametrize(("source", "forms"), [
    ("{% ri as a %}{{ a }}", "A"),
    ("{% ri as a %}x{% endri %}", "B"),
    ("{% ri as a %}{% ri as b %}x{% endri %}", "AB"),
    ("{% ri as a %}x{% endri %}{% ri as b %}", "BA"),
    ("{% ri %}{% ri as a %}x{% endri %}", "BA"),
    ("{% ri %}{% ri as a %}x{% endri %}{% endri %}", "BB"),
    ("{% ri as a %}{% ri %}x{% endri %}{% endri %}", "BB"),
    ("{% ri as a %}{% ri %}x{% endri %}", "AB"),
    ("{% for i in l %}{% ri as a %}{% endfor %}{% ri %}x{% endri %}", "AB"),
    ('{% personalized_block "h" %}{% variant "v" %}{% ri as a %}{% variant "w" %}{% ri %}{% endri %}'
     "{% endpersonalized_block %}", "AB"),
])
def test_the_end_tags_tell_the_assignment_form_from_the_block_form(source, forms):
    from django.template import Template

    from personalization.delivery.tags.items import ItemsNode

    compiled = Template("{% load personalization %}" + source.replace("{% ri", "{% recommended_items")
                        .replace("{% endri", "{% endrecommended_items"))
    nodes = compiled.nodelist.get_nodes_by_type(ItemsNode)
    assert "".join("A" if node.assigns else "B" for node in nodes) == forms
