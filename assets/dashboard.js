// The dashboard's live parts that htmx's SSE extension does not swap by itself:
// the map's shades and the dots of new presses (JSON events), the details of a
// country on hover, focus or tap, and the fallback to refreshing the figures
// every 5 s while the live stream is down. Without JavaScript the page still
// shows the map (each country's count in its tooltip) and the table.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var map = document.getElementById("world-map");
  if (!live || !map) return;
  var status = document.getElementById("live-status");
  var info = document.getElementById("map-info");
  var dots = document.getElementById("map-dots");
  var SVG = "http://www.w3.org/2000/svg";
  var pinned = null;
  var poll = null;

  function country(target) {
    return target && target.closest ? target.closest("path.country") : null;
  }
  function label(path) {
    var t = path.querySelector("title");
    return t ? t.textContent : "";
  }
  function show(path) {
    if (path && info) info.textContent = label(path);
  }
  function pin(path) {
    if (pinned) pinned.classList.remove("pinned");
    pinned = path === pinned ? null : path;
    if (pinned) {
      pinned.classList.add("pinned");
      show(pinned);
    }
  }

  map.addEventListener("mouseover", function (e) {
    var p = country(e.target);
    if (p && !pinned) show(p);
  });
  map.addEventListener("focusin", function (e) {
    show(country(e.target));
  });
  map.addEventListener("click", function (e) {
    var p = country(e.target);
    if (p) pin(p);
  });
  map.addEventListener("keydown", function (e) {
    var p = country(e.target);
    if (p && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      pin(p);
    }
  });

  function presses(n) {
    return n === 0 ? "no presses" : n === 1 ? "1 press" : n + " presses";
  }

  // {"FI": [count, level], ...}
  function shade(json) {
    var data = JSON.parse(json);
    Object.keys(data).forEach(function (code) {
      if (!/^[A-Z-]{2}$/.test(code)) return;
      var p = map.querySelector('path[data-code="' + code + '"]');
      if (!p) return;
      var count = data[code][0];
      var level = data[code][1];
      p.setAttribute("class", "country l" + level + (p === pinned ? " pinned" : ""));
      p.setAttribute("data-count", String(count));
      if (count > 0) p.setAttribute("tabindex", "0");
      else p.removeAttribute("tabindex");
      var t = p.querySelector("title");
      if (t) t.textContent = t.textContent.split(": ")[0] + ": " + presses(count);
      if (p === pinned) show(p);
    });
  }

  // [[x, y], ...] in the map's coordinates: short-lived dots.
  function drop(json) {
    if (!dots) return;
    JSON.parse(json).forEach(function (xy) {
      var c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", String(xy[0]));
      c.setAttribute("cy", String(xy[1]));
      c.setAttribute("r", "5");
      c.setAttribute("class", "dot");
      dots.appendChild(c);
      window.setTimeout(function () {
        c.remove();
      }, 4000);
    });
  }

  live.addEventListener("htmx:sseOpen", function (e) {
    var source = e.detail.source;
    // The browser reconnects by itself with the same source: hook it once.
    if (!source.buttonHooked) {
      source.buttonHooked = true;
      source.addEventListener("map", function (m) {
        shade(m.data);
      });
      source.addEventListener("dots", function (m) {
        drop(m.data);
      });
    }
    status.textContent = "Live: presses show here as they happen.";
    status.classList.remove("down");
    if (poll) {
      window.clearInterval(poll);
      poll = null;
    }
  });

  live.addEventListener("htmx:sseError", function () {
    status.textContent = "Live updates are interrupted; refreshing the figures every 5 seconds until they are back.";
    status.classList.add("down");
    if (!poll) {
      poll = window.setInterval(function () {
        htmx.ajax("GET", "/stats", { target: "#stats", swap: "outerHTML" });
      }, 5000);
    }
  });
})();
