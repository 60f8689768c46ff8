// Gallery filter: hide the cards (and empty family sections) that do not match the family / layout / rank selects.
// Runs on every page load; with material's instant navigation it re-runs through document$.
(function () {
  function init() {
    var fam = document.getElementById("az-family");
    var lay = document.getElementById("az-layout");
    var dims = document.getElementById("az-dims");
    if (!fam || !lay || fam.dataset.azReady) return;
    fam.dataset.azReady = "1";
    var count = document.getElementById("az-count");
    function apply() {
      var shown = 0;
      document.querySelectorAll(".az-card").forEach(function (card) {
        var ok = (!fam.value || card.dataset.family === fam.value) && (!lay.value || card.dataset.layout === lay.value) &&
          (!dims || !dims.value || (card.dataset.dims || "").split(" ").indexOf(dims.value) >= 0);
        card.hidden = !ok;
        if (ok) shown += 1;
      });
      document.querySelectorAll("section.az-family").forEach(function (sec) {
        sec.hidden = !sec.querySelector(".az-card:not([hidden])");
      });
      if (count) count.textContent = shown + " module" + (shown === 1 ? "" : "s");
    }
    var params = new URLSearchParams(window.location.search);
    if (params.get("family")) fam.value = params.get("family");
    if (params.get("layout")) lay.value = params.get("layout");
    if (dims && params.get("dims")) dims.value = params.get("dims");
    fam.addEventListener("change", apply);
    lay.addEventListener("change", apply);
    if (dims) dims.addEventListener("change", apply);
    apply();
  }
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(init);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
