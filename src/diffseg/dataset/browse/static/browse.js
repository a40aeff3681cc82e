// The grid of index.html: one card per image, built from the JSON the page carries (a page opened from disk
// cannot fetch files), filtered by the form's selects. The filters live in the URL's fragment, so a filtered
// view can be bookmarked and the back button returns to it.
(function () {
  "use strict";
  const items = JSON.parse(document.getElementById("dataset").textContent);
  const selects = Array.from(document.querySelectorAll("#filters select"));
  const grid = document.getElementById("grid");
  const count = document.getElementById("count");

  // A select's name is the item field it filters; list fields (generators, actions) match on any element.
  function matches(item, select) {
    const field = item[select.name];
    if (select.value === "") return true;
    return Array.isArray(field) ? field.includes(select.value) : String(field) === select.value;
  }

  function card(item) {
    const link = document.createElement("a");
    link.className = "card";
    link.href = "images/" + encodeURIComponent(item.id) + ".html";
    link.dataset.id = item.id;
    const img = document.createElement("img");
    img.src = "thumbs/" + encodeURIComponent(item.id) + ".png";
    img.alt = item.id;
    img.loading = "lazy";
    const text = document.createElement("span");
    const edits = item.n_edits === 1 ? "1 edit" : item.n_edits + " edits";
    text.textContent = [item.id, item.split, edits, item.generators.join(", "), item.actions.join(", ")]
      .filter(Boolean).join(" · ");
    link.append(img, text);
    return link;
  }

  function render() {
    const shown = items.filter(item => selects.every(select => matches(item, select)));
    const cards = document.createDocumentFragment();
    shown.forEach(item => cards.appendChild(card(item)));
    grid.replaceChildren(cards);
    count.textContent = shown.length + " of " + items.length + " images";
  }

  function fromFragment() {
    const wanted = new URLSearchParams(location.hash.slice(1));
    selects.forEach(select => {
      select.value = wanted.get(select.name) || "";
      if (select.selectedIndex < 0) select.value = "";  // a value this dataset does not have: no filter
    });
    render();
  }

  document.getElementById("filters").addEventListener("change", () => {
    const chosen = new URLSearchParams();
    selects.filter(select => select.value !== "").forEach(select => chosen.set(select.name, select.value));
    history.replaceState(null, "", "#" + chosen.toString());
    render();
  });
  window.addEventListener("hashchange", fromFragment);
  fromFragment();
})();
