/* django-personalization tracker: clicks, impressions, dwell; batched, sent with sendBeacon, retried with the
   same event ids. No dependencies. Configured by its <script> tag's data-* attributes ({% tracking_script %}). */
(function (w, d) {
  "use strict";
  var me = d.currentScript;
  if (!me || w.personalization) return;
  var cfg = me.dataset, endpoint = cfg.endpoint + "?client=tracker", KEY = "personalization:queue";
  var queue = [], seen = {}, visibleSince = Date.now();
  var tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* old browser */ }

  function uuid() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }
  function consented() {
    if (cfg.consentRequired !== "1") return true;
    return new RegExp("(^|; )" + cfg.consentCookie + "=\\s*(1|true|yes|granted|all|personalization)\\s*(;|$)", "i")
      .test(d.cookie);
  }
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(queue.slice(-200))); } catch (e) { /* private mode */ }
  }
  function track(event, item, extra) {
    if (!consented()) return;
    extra = extra || {};
    var ctx = { page: location.pathname, tz: tz, screen: w.innerWidth };
    if (d.referrer) ctx.referrer = d.referrer;
    for (var k in extra.context || {}) ctx[k] = extra.context[k];
    var e = { event: event, event_id: uuid(), timestamp: new Date().toISOString(), context: ctx };
    if (item) e.item = item;
    if (extra.value != null) e.value = extra.value;
    if (extra.recommendation_id) e.recommendation_id = extra.recommendation_id;
    queue.push(e);
    save();
    if (queue.length >= 20) flush(false);
  }
  function flush(leaving) {
    if (!queue.length || !endpoint) return;
    var batch = queue.slice(0, 100), body = JSON.stringify({ events: batch });
    if (leaving && navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([body], { type: "application/json" }))) {
      queue = queue.slice(batch.length); save(); return;
    }
    fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "same-origin",
      headers: { "Content-Type": "application/json" } })
      .then(function (r) {
        // 2xx: stored; 4xx: will never be accepted. Either way drop the batch. 5xx/network: keep and retry.
        if (r.status < 500) { queue = queue.filter(function (e) { return batch.indexOf(e) < 0; }); save(); }
      })
      .catch(function () { /* offline: retried on the next flush with the same event ids */ });
  }
  function slotOf(el) {
    var s = el.closest("[data-personalization-slot]");
    return s ? { slot: s.dataset.personalizationSlot, rec: s.dataset.recommendationId } : {};
  }
  function extraFor(el) {
    var s = slotOf(el), ctx = {};
    if (s.slot) ctx.slot = s.slot;
    if (el.dataset.personalizationPosition) ctx.position = +el.dataset.personalizationPosition;
    return { context: ctx, recommendation_id: s.rec };
  }

  d.addEventListener("click", function (ev) {
    var el = ev.target.closest && ev.target.closest("[data-personalization-item]");
    // data-personalization-track="server": the server records this action (e.g. a cart form); don't count it twice.
    if (!el || el.dataset.personalizationTrack === "server") return;
    var kind = el.dataset.personalizationEvent || "click";
    var x = extraFor(el);
    if (el.dataset.personalizationValue) x.value = +el.dataset.personalizationValue;
    track(kind, el.dataset.personalizationItem, x);
    if (el.tagName === "A" || el.closest("form")) flush(true);
  }, true);

  var io = w.IntersectionObserver && new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var el = en.target, key = el.dataset.personalizationItem + "|" + (slotOf(el).slot || "");
      if (en.isIntersecting && !seen[key]) {
        seen[key] = 1; io.unobserve(el);
        track("impression", el.dataset.personalizationItem, extraFor(el));
      }
    });
  }, { threshold: 0.5 });
  function observe(root) {
    if (!io) return;
    (root || d).querySelectorAll("[data-personalization-slot] [data-personalization-item]").forEach(function (el) {
      io.observe(el);
    });
  }

  d.addEventListener("visibilitychange", function () {
    // Each hide reports the visible seconds since the last report, so a page's dwell events add up.
    if (d.visibilityState === "hidden") {
      var secs = Math.round((Date.now() - visibleSince) / 1000);
      if (cfg.item && secs > 0) track("dwell", cfg.item, { value: secs });
      flush(true);
    } else visibleSince = Date.now();
  });
  w.addEventListener("pagehide", function () { flush(true); });

  queue = load();
  w.personalization = { track: track, flush: flush, observe: observe, queue: function () { return queue.slice(); } };
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", function () { observe(); });
  else observe();
  setInterval(function () { flush(false); }, +(cfg.flushInterval || 5000));
  flush(false);
})(window, document);
