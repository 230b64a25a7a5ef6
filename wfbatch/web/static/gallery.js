// Keyboard culling on the gallery: arrows move, Shift+arrows / Shift+click select a range,
// Space toggles, a / x / u approve, reject or undo (back to pending) through the daemon's review
// route, Enter opens the full size. Acts on the selection, else on the focused image.
"use strict";
(() => {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const cards = Array.from(grid.querySelectorAll(".card"));
  const lightbox = document.getElementById("lightbox");
  const lightboxImg = document.getElementById("lightbox-img");
  const selected = new Set();
  let current = 0;
  let anchor = 0;

  function columns() {
    if (cards.length < 2) return 1;
    const top = cards[0].offsetTop;
    const n = cards.findIndex((card) => card.offsetTop !== top);
    return n === -1 ? cards.length : n;
  }

  function focusCard(index) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, index));
    cards.forEach((card, i) => { card.tabIndex = i === current ? 0 : -1; });
    cards[current].focus();
  }

  function paintSelection() {
    cards.forEach((card) => card.classList.toggle("selected", selected.has(card)));
  }

  function selectRange(from, to) {
    const [lo, hi] = from < to ? [from, to] : [to, from];
    for (let i = lo; i <= hi; i++) selected.add(cards[i]);
    paintSelection();
  }

  function openFull(card) {
    lightboxImg.src = card.querySelector(".thumb").dataset.full;
    lightboxImg.alt = card.querySelector("img").alt;
    lightbox.showModal();
  }

  async function decide(decision) {
    const targets = selected.size ? Array.from(selected) : [cards[current]];
    const ids = targets.map((card) => Number(card.dataset.id));
    try {
      const result = await wfb.post("/api/review", { job_ids: ids, decision });
      const review = decision === "approve" ? "approved" : decision === "reject" ? "rejected" : "pending";
      for (const card of targets) {
        card.dataset.review = review;
        const badge = card.querySelector(".badge");
        badge.textContent = review;
        badge.className = `badge review-${review}`;
      }
      selected.clear();
      paintSelection();
      wfb.toast(result.message || `${decision}: ${ids.map((id) => "#" + id).join(", ")}`);
    } catch (error) {
      wfb.toast(`${decision} failed: ${error.message}`, true);
    }
  }

  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: "down", ArrowUp: "up", Home: "home", End: "end" };

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea, dialog") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!cards.length) return;
    if (event.key in moves) {
      const move = moves[event.key];
      const cols = columns();
      const target = move === "down" ? current + cols : move === "up" ? current - cols
        : move === "home" ? 0 : move === "end" ? cards.length - 1 : current + move;
      if (event.shiftKey) {
        if (!selected.size) anchor = current;
        focusCard(target);
        selected.clear();
        selectRange(anchor, current);
      } else {
        focusCard(target);
      }
      event.preventDefault();
      return;
    }
    switch (event.key) {
      case "a": decide("approve"); break;
      case "x": decide("reject"); break;
      case "u": decide("pending"); break;
      case " ":
        if (selected.has(cards[current])) selected.delete(cards[current]); else selected.add(cards[current]);
        anchor = current;
        paintSelection();
        break;
      case "Enter": openFull(cards[current]); break;
      case "Escape": selected.clear(); paintSelection(); return;
      default: return;
    }
    event.preventDefault();
  });

  grid.addEventListener("click", (event) => {
    const card = event.target.closest(".card");
    if (!card || event.target.closest("a")) return;
    const index = cards.indexOf(card);
    if (event.shiftKey) {
      selectRange(anchor, index);
      focusCard(index);
    } else if (event.ctrlKey || event.metaKey) {
      if (selected.has(card)) selected.delete(card); else selected.add(card);
      anchor = index;
      paintSelection();
      focusCard(index);
    } else if (event.target.closest(".thumb")) {
      focusCard(index);
      openFull(card);
    } else {
      anchor = index;
      focusCard(index);
    }
  });

  lightbox.addEventListener("click", (event) => { if (event.target === lightbox) lightbox.close(); });
  lightbox.addEventListener("close", () => cards[current] && cards[current].focus());
  focusCard(0);
})();
