
(function (w, d) {
  "use strict";
  var me = d.currentScript;
  if (!me || w.personalization) return;
  var cfg = me.dataset, endpoint = cfg.endpoint + "?client=tracker", KEY = "personalization:queue";
  var queue = [], seen = {}, visibleSince = Date.now(), local = cfg.privacy === "local", B = null;
  var BK = "personalization:bundle", HK = "personalization:history", RATE = 0.35;
  var tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) {  }

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
  function get(k, dflt) {
    try { return JSON.parse(localStorage.getItem(k)) || dflt; } catch (e) { return dflt; }
  }
  function put(k, v) {
    try { localStorage.setItem(k, JSON.stringify(v)); } catch (e) {  }
  }
  function save() { put(KEY, queue.slice(-200)); }
  function track(event, item, extra) {
    if (!consented()) return;
    if (item && event !== "impression" && event !== "dwell") learn(item);
    if (local) return;
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
        if (r.status < 500) { queue = queue.filter(function (e) { return batch.indexOf(e) < 0; }); save(); }
      })
      .catch(function () {  });
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
    rerank(root);
    if (!io) return;
    (root || d).querySelectorAll("[data-personalization-slot] [data-personalization-item]").forEach(function (el) {
      io.observe(el);
    });
  }

  function learn(item) {
    var h = get(HK, []);
    if (consented() && h[h.length - 1] !== item) put(HK, h.concat([item]).slice(-20));
  }
  function unit(s) {
    var v = new Int8Array(s.length), n = 0, i;
    for (i = 0; i < s.length; i++) { v[i] = s.charCodeAt(i); n += v[i] * v[i]; }
    n = Math.sqrt(n) || 1;
    return [].map.call(v, function (x) { return x / n; });
  }
  function prep(b) {
    var all = atob(b.vectors), vec = {};
    b.items.forEach(function (k, i) { vec[k] = unit(all.substr(i * b.dims, b.dims)); });
    b.vec = vec;
    return b;
  }
  function dot(a, b) {
    for (var s = 0, i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  }
  function rerank(root) {
    if (!B) return;
    var s = B.user ? unit(atob(B.user.vector)) : [], i, I = "[data-personalization-item]";
    get(HK, []).forEach(function (k) {
      var v = B.vec[k];
      for (i = 0; v && i < B.dims; i++) s[i] = (1 - RATE) * (s[i] || 0) + RATE * v[i];
    });
    if (!s.length) return;
    (root || d).querySelectorAll("[data-personalization-slot][data-personalization-rerank]").forEach(function (box) {
      [].map.call(box.children, function (el, j) {
        var it = el.matches(I) ? el : el.querySelector(I), v = it && B.vec[it.dataset.personalizationItem];
        return [v ? dot(s, v) : -9, j, el, it];
      }).sort(function (a, b) { return b[0] - a[0] || a[1] - b[1]; }).forEach(function (r, j) {
        box.appendChild(r[2]);
        if (r[3] && r[3].dataset.personalizationPosition) r[3].dataset.personalizationPosition = j + 1;
      });
      box.dataset.personalizationReranked = B.model_version;
    });
  }
  function bundle() {
    var c = get(BK, null);
    if (c && c.until > Date.now() && c.local === local) { B = prep(c.b); return rerank(); }
    fetch((cfg.bundle || cfg.endpoint.replace(/events\/$/, "bundle/")) + (local ? "?segment=all" : ""),
      { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) {
        if (!b || b.format !== 1) return;
        put(BK, { b: b, until: Date.now() + 1000 * b.ttl, local: local });
        B = prep(b);
        rerank();
      })
      .catch(function () {  });
  }

  d.addEventListener("visibilitychange", function () {
    if (d.visibilityState === "hidden") {
      var secs = Math.round((Date.now() - visibleSince) / 1000);
      if (cfg.item && secs > 0) track("dwell", cfg.item, { value: secs });
      flush(true);
    } else visibleSince = Date.now();
  });
  w.addEventListener("pagehide", function () { flush(true); });

  queue = local ? [] : get(KEY, []);
  w.personalization = { track: track, flush: flush, observe: observe, rerank: rerank,
    queue: function () { return queue.slice(); } };
  function start() {
    if (cfg.item) learn(cfg.item);
    observe();
    bundle();
  }
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start);
  else start();
  setInterval(function () { flush(false); }, +(cfg.flushInterval || 5000));
  flush(false);
})(window, document);
