// nfcpay ui: the live panels. The server renders each panel's HTML and sends it over
// server-sent events; this puts it in place. A form marked data-live is posted in the
// background (the same POST, CSRF field and all) and its result arrives as panels, so the
// page is not reloaded; without this script it is an ordinary form. Nothing else runs here.
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
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-live") || document.body.dataset.live !== "on") return;
    event.preventDefault();
    var body = new URLSearchParams(new FormData(form, event.submitter));
    fetch(form.action, { method: "POST", body: body, redirect: "manual" });
  });
  connect();
})();
