// Behaviour every page shares: confirmation of destructive forms, printing, the status
// strip.

import { getJSON, postJSON } from "./api.js";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-print]");
  if (button) {
    event.preventDefault();
    window.print();
  }
});

// The status strip (templates/_status_strip.html): asks the server for the terminal's
// state every few seconds, so that 在线 / 离线 / 设备已停用 stay true without a reload,
// and runs 立即同步 in place. Other pages may listen for "clinic:status" on document.

const strip = document.getElementById("status-strip");

function renderStrip(state) {
  if (!strip || !state) return;
  strip.className = `status-strip ${state.level}`;
  strip.dataset.state = state.state;
  strip.querySelector(".strip-label").textContent = state.label;
  for (const old of strip.querySelectorAll(".strip-part")) old.remove();
  const text = strip.querySelector(".strip-text");
  for (const part of state.parts) {
    const span = document.createElement("span");
    span.className = "strip-part";
    span.textContent = ` · ${part}`;
    text.append(span);
  }
  const lines = state.state !== "online" && state.message ? [state.message] : [];
  strip.querySelector(".strip-message").textContent = [...lines, ...state.stale].join(" ");
  strip.querySelector(".strip-sync").hidden = !state.can_sync;
  document.dispatchEvent(new CustomEvent("clinic:status", { detail: state }));
}

async function pollStrip() {
  const { status, data } = await getJSON(strip.dataset.pollUrl);
  if (status === 200) renderStrip(data);
}

if (strip) {
  const every = Number(strip.dataset.pollMs) || 15000;
  setInterval(pollStrip, every);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollStrip();
  });
  const form = strip.querySelector(".strip-sync");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    const label = button.textContent;
    button.disabled = true;
    button.textContent = button.dataset.busy;
    try {
      const { data } = await postJSON(form.action, {});
      if (data && data.strip) {
        renderStrip(data.strip);
        strip.querySelector(".strip-message").textContent = data.message;
      }
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
}
