// gptlab report: highlight the section in view in the sidebar; expand or collapse every sample at once.
(function () {
  "use strict";
  var links = {};
  document.querySelectorAll("nav#toc a").forEach(function (a) { links[a.getAttribute("href").slice(1)] = a; });
  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting && links[e.target.id]) {
          Object.keys(links).forEach(function (k) { links[k].classList.remove("active"); });
          links[e.target.id].classList.add("active");
        }
      });
    }, { rootMargin: "0px 0px -70% 0px" });
    document.querySelectorAll("main section").forEach(function (s) { observer.observe(s); });
  }
  var button = document.getElementById("toggle-details");
  if (button) {
    button.addEventListener("click", function () {
      var all = document.querySelectorAll("main details");
      var open = button.dataset.open !== "1";
      all.forEach(function (d) { d.open = open; });
      button.dataset.open = open ? "1" : "0";
      button.textContent = open ? "collapse all samples" : "expand all samples";
    });
  }
  document.documentElement.dataset.reportReady = "1";  // the browser test waits for this
})();
