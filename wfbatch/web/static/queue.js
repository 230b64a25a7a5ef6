// The queue page: live over the daemon's events (re-reading the live part, at most about once a
// second), retry and cancel that ask first for several jobs or a running one.
"use strict";
(() => {
  const RUNNING = new Set(["submitting", "running"]);
  const live = document.getElementById("live");

  function picked(selector) {
    return Array.from(document.querySelectorAll(selector)).filter((box) => box.checked);
  }

  function askFirst(action, ids, states) {
    const running = states.filter((state) => RUNNING.has(state)).length;
    if (ids.length > 1 || running) {
      const what = ids.length > 1 ? `${ids.length} jobs` : `job #${ids[0]}`;
      const note = running ? ` (${running} running: ${action === "cancel" ? "its execution may still be charged" : "it starts again"})` : "";
      return wfb.confirmDialog(`${action === "cancel" ? "Cancel" : "Retry"} ${what}${note}?`);
    }
    return Promise.resolve(true);
  }

  async function act(button) {
    const action = button.dataset.action;
    let ids = [];
    let states = [];
    let body = null;
    if (button.dataset.scope === "all-failed") {
      if (!(await wfb.confirmDialog("Retry every failed job?"))) return;
      body = { all_failed: true };
    } else {
      if (button.dataset.ids) {
        ids = button.dataset.ids.split(",").map(Number);
        states = (button.dataset.states || "").split(",");
      } else {
        const boxes = picked(button.dataset.scope === "selected-active" ? ".pick-active" : ".pick");
        ids = boxes.map((box) => Number(box.value));
        states = boxes.map((box) => box.dataset.state);
      }
      if (!ids.length) { wfb.toast("select jobs first (the boxes beside them)", true); return; }
      if (!(await askFirst(action, ids, states))) return;
      body = { job_ids: ids };
    }
    try {
      const result = await wfb.post(`/api/${action}`, body);
      wfb.toast(result.message || `${action}: done`);
      refresh();
    } catch (error) {
      wfb.toast(`${action} failed: ${error.message}`, true);
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) { event.preventDefault(); act(button); }
  });

  if (!live) return;
  let pending = null;
  async function refresh() {
    pending = null;
    const keep = new Set(picked(".pick, .pick-active").map((box) => box.value));
    const open = new Set(Array.from(live.querySelectorAll("details[open]")).map((d) => d.closest("[data-id]")?.dataset.id));
    const response = await fetch("/queue?part=live", { credentials: "same-origin" });
    if (!response.ok) return;
    live.innerHTML = await response.text();
    live.querySelectorAll(".pick, .pick-active").forEach((box) => { box.checked = keep.has(box.value); });
    live.querySelectorAll("[data-id] details").forEach((d) => { if (open.has(d.closest("[data-id]").dataset.id)) d.open = true; });
  }
  function soon() { if (!pending) pending = setTimeout(refresh, 800); }

  const dot = document.getElementById("live-dot");
  const text = document.getElementById("live-text");
  const source = new EventSource("/api/events");
  source.onopen = () => { dot.classList.add("on"); text.textContent = "live: updates as the daemon works"; };
  source.onerror = () => { dot.classList.remove("on"); text.textContent = "reconnecting to the daemon's events…"; };
  for (const kind of ["job", "progress", "batch", "provider", "engine", "inbox", "remote_batch", "resync"]) {
    source.addEventListener(kind, soon);
  }
})();
