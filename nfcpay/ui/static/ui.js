// nfcpay ui: the live panels. The server renders each panel's HTML and sends it over
// server-sent events; this puts it in place. Nothing else runs here.
(function () {
  "use strict";
  function connect() {
    var events = new EventSource("/events");
    events.addEventListener("swap", function (event) {
      var swap = JSON.parse(event.data);
      var element = document.getElementById(swap.target);
      if (!element) return;
      if (swap.mode === "prepend") element.insertAdjacentHTML("afterbegin", swap.html);
      else element.innerHTML = swap.html;
      document.body.dataset.live = "on";
    });
    events.onopen = function () { document.body.dataset.live = "on"; };
    events.onerror = function () { document.body.dataset.live = "off"; };
  }
  connect();
})();
