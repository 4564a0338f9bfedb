// Live timelines: appends the server-sent events of a page's stream (a
// machine's, or the fleet's on the events page) to its list and updates the
// machine's state badge, without a reload.
(function () {
  "use strict";
  var list = document.getElementById("events");
  if (!list || !window.EventSource) { return; }
  var source = new EventSource(list.dataset.stream);
  source.addEventListener("timeline", function (msg) {
    var ev = JSON.parse(msg.data);
    if (list.querySelector('li[data-id="' + ev.id + '"]')) { return; }
    var empty = list.querySelector("li.empty");
    if (empty) { empty.remove(); }
    var li = document.createElement("li");
    li.dataset.id = ev.id;
    li.className = "new";
    var t = document.createElement("time");
    t.dateTime = ev.at;
    t.textContent = ev.at.replace("T", " ").replace("Z", "");
    var strong = document.createElement("strong");
    strong.textContent = ev.type;
    li.append(t, " ");
    if (list.dataset.fleet && ev.machine) {
      var a = document.createElement("a");
      a.href = "/ui/machines/" + encodeURIComponent(ev.machine);
      a.textContent = ev.machine;
      li.append(a, " ");
    }
    li.append(strong);
    if (ev.detail) {
      var code = document.createElement("code");
      code.textContent = JSON.stringify(ev.detail);
      li.append(" ", code);
    }
    list.append(li);
    var power = document.getElementById("power");
    if (power && ev.detail && ev.detail.power && ev.type.indexOf("bmc.") === 0) {
      power.textContent = ev.detail.power + " (just now)";
    }
    var state = document.getElementById("state");
    if (state && ev.state) {
      var badge = document.createElement("span");
      badge.className = "badge state-" + ev.state;
      badge.textContent = ev.state;
      state.replaceChildren(badge);
    }
  });
})();
