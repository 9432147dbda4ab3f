// hookd console: progressive enhancement only. Every page works without this file; with it,
// forms show only the fields of the chosen options, lists of rows grow, values copy, and
// destructive buttons ask first. Loaded from 'self' (the CSP allows no inline script).
"use strict";
(function () {
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    // Authentication: show the fields of the selected mode.
    var authRadios = document.querySelectorAll("input[name=auth]");
    function showAuth() {
      var chosen = document.querySelector("input[name=auth]:checked");
      document.querySelectorAll(".authmode").forEach(function (el) {
        el.classList.toggle("shown", !!chosen && el.dataset.auth === chosen.value);
      });
    }
    authRadios.forEach(function (r) { r.addEventListener("change", showAuth); });
    if (authRadios.length) showAuth();

    // Raw data vs selected fields.
    var fields = document.getElementById("payload-fields");
    function showFields() {
      var sel = document.getElementById("in-payload-fields");
      if (fields && sel) fields.classList.toggle("shown", sel.checked);
    }
    document.querySelectorAll("input[name=payload]").forEach(function (r) { r.addEventListener("change", showFields); });
    showFields();

    // Custom header rows: one more on demand.
    document.querySelectorAll("[data-add-row]").forEach(function (button) {
      var rows = button.parentElement.querySelector("[data-rows]");
      if (!rows) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var last = rows.lastElementChild;
        var copy = last.cloneNode(true);
        var n = rows.children.length;
        copy.querySelectorAll("input").forEach(function (input) {
          var id = input.id.replace(/-\d+$/, "-" + n);
          var label = copy.querySelector("label[for='" + input.id + "']");
          if (label) { label.htmlFor = id; label.textContent = label.textContent.replace(/\d+$/, String(n + 1)); }
          input.id = id;
          input.value = "";
        });
        rows.appendChild(copy);
        copy.querySelector("input").focus();
      });
    });

    // Copy buttons next to values shown once.
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      var target = document.querySelector(button.dataset.copy);
      if (!target || !navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(target.value).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        });
      });
    });

    // Destructive buttons ask before submitting.
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    });

    // A filter box over a long list of event types.
    document.querySelectorAll("[data-filter-list]").forEach(function (input) {
      var list = document.getElementById(input.dataset.filterList);
      if (!list) return;
      input.closest(".filterbox").hidden = false;
      input.addEventListener("input", function () {
        var q = input.value.toLowerCase();
        list.querySelectorAll("li").forEach(function (li) {
          li.hidden = q !== "" && li.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
    });
  });
})();
