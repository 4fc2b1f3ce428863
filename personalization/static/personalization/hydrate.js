/* django-personalization hydration and content-block tracking. No dependencies; loaded by {% tracking_script %}
   after tracker.js.
   1. Placeholders ([data-personalization-hydrate], rendered by the tags on cached pages) are filled with ONE
      request per page: GET <page endpoint>?slots=a,b&templates=t1,t2&page=<path>, one spec per placeholder in
      document order, so each list skips the items of the lists before it as on a server-rendered page.
   2. Content blocks ([data-personalization-block]) report an impression when half visible and clicks inside
      them, with context {slot, block, variant}, through window.personalization.track (tracker.js). Items inside a
      block are marked data-personalization-track="server" so tracker.js does not count their clicks twice. */
(function (w, d) {
  "use strict";
  var me = d.currentScript;
  if (!me || w.personalizationHydrate) return;
  var endpoint = me.dataset.pageEndpoint;

  function api() { return w.personalization || null; }
  function blockContext(blk, el) {
    var ctx = { slot: blk.dataset.personalizationBlock, block: blk.dataset.personalizationBlock,
      variant: blk.dataset.personalizationVariant };
    var x = { context: ctx }, inner = el && el.closest("[data-personalization-slot]");
    if (el && el.dataset.personalizationPosition) ctx.position = +el.dataset.personalizationPosition;
    if (inner && blk.contains(inner) && inner.dataset.recommendationId) x.recommendation_id = inner.dataset.recommendationId;
    return x;
  }
  function blockItem(blk) {
    if (blk.dataset.personalizationBlockItem) return blk.dataset.personalizationBlockItem;
    var first = blk.querySelector("[data-personalization-item]");
    return first ? first.dataset.personalizationItem : "";
  }

  var seen = {};
  var io = w.IntersectionObserver && new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var blk = en.target, key = blk.dataset.personalizationBlock + "|" + blk.dataset.personalizationVariant;
      if (!en.isIntersecting || seen[key]) return;
      var item = blockItem(blk), p = api();
      if (!item || !p) return;
      seen[key] = 1; io.unobserve(blk);
      p.track("impression", item, blockContext(blk));
    });
  }, { threshold: 0.5 });

  function setupBlocks(root) {
    var blocks = [];
    if (root.matches && root.matches("[data-personalization-block]")) blocks.push(root);
    root.querySelectorAll && root.querySelectorAll("[data-personalization-block]").forEach(function (b) { blocks.push(b); });
    blocks.forEach(function (blk) {
      if (blk.dataset.personalizationWatched) return;
      blk.dataset.personalizationWatched = "1";
      blk.querySelectorAll("[data-personalization-item]").forEach(function (el) {
        if (!el.dataset.personalizationTrack) { el.dataset.personalizationTrack = "server"; el.dataset.personalizationBlockOwned = "1"; }
      });
      if (io) io.observe(blk);
    });
  }

  d.addEventListener("click", function (ev) {
    var t = ev.target, blk = t.closest && t.closest("[data-personalization-block]"), p = api();
    if (!blk || !p) return;
    var el = t.closest("[data-personalization-item]");
    if (el && !el.dataset.personalizationBlockOwned) return; // recorded by the server or tracker.js
    var link = t.closest("a, button");
    if (!el && !link) return;
    var item = el ? el.dataset.personalizationItem : blockItem(blk);
    if (!item) return;
    var x = blockContext(blk, el);
    if (el && el.dataset.personalizationValue) x.value = +el.dataset.personalizationValue;
    p.track((el && el.dataset.personalizationEvent) || "click", item, x);
    if (link && (link.tagName === "A" || link.closest("form"))) p.flush(true);
  }, true);

  function fill(el, html) {
    var box = d.createElement("div");
    box.innerHTML = html;
    var parent = el.parentNode, nodes = Array.prototype.slice.call(box.childNodes);
    if (!parent) return;
    nodes.forEach(function (n) { parent.insertBefore(n, el); });
    parent.removeChild(el);
    nodes.forEach(function (n) {
      if (n.nodeType !== 1) return;
      setupBlocks(n);
      var p = api();
      if (p && p.observe) p.observe(n.parentNode || d);
    });
  }

  function hydrate() {
    setupBlocks(d);
    var els = Array.prototype.slice.call(d.querySelectorAll("[data-personalization-hydrate]"))
      .filter(function (el) { return el.dataset.personalizationHydrate; });
    if (!els.length || !endpoint) return;
    var specs = [], templates = [];
    els.forEach(function (el) {
      var t = el.dataset.personalizationTemplate;
      specs.push(el.dataset.personalizationHydrate);
      if (t && templates.indexOf(t) < 0) templates.push(t);
    });
    var url = endpoint + "?slots=" + encodeURIComponent(specs.join(",")) +
      "&templates=" + encodeURIComponent(templates.join(",")) +
      "&page=" + encodeURIComponent(location.pathname + location.search);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.slots) return; // placeholders keep their default content
        var ordered = data.placeholders || [];
        els.forEach(function (el, i) { // placeholders past the API's limit take their spec's first rendering
          var slot = i < ordered.length ? ordered[i] : data.slots[el.dataset.personalizationHydrate];
          if (slot && typeof slot.html === "string") fill(el, slot.html);
        });
      })
      .catch(function () { /* offline: the default content stays */ });
  }

  w.personalizationHydrate = { hydrate: hydrate, setupBlocks: setupBlocks };
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", hydrate);
  else hydrate();
})(window, document);
