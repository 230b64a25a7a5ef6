// Shared by every page: POST with the CSRF token, a toast, and a confirm dialog.
"use strict";
window.wfb = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (_) { /* an empty or non-JSON answer */ }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  let toastTimer = null;
  function toast(text, isError) {
    const box = document.getElementById("toast");
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
    box.classList.add("shown");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.remove("shown"), 6000);
  }

  // Resolves true when the user says go ahead (Enter on the focused button, or a click).
  function confirmDialog(text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        try { await post("/api/logout", {}); } finally { window.location.assign("/"); }
      });
    }
  });

  return { post, toast, confirmDialog };
})();
