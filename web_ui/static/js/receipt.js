// The paper layout of the receipt, fetched after the page is shown; and, right after a
// settlement was confirmed (the settle page opens this page with ?print=auto), the
// settlement form printed once by itself when the terminal is set to.

import { postJSON } from "./api.js";

const paper = document.getElementById("receipt-text");
if (paper?.dataset.src) {
  fetch(paper.dataset.src, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.text() : ""))
    .then((text) => {
      paper.textContent = text;
    })
    .catch(() => {});
}

const status = document.getElementById("auto-print");
if (status?.dataset.url) {
  // A reload or the back button must not print again: drop the request from the address.
  const url = new URL(window.location.href);
  url.searchParams.delete("print");
  window.history.replaceState(null, "", url.pathname + url.search);
  status.textContent = status.dataset.printing;
  status.dataset.state = "printing";
  postJSON(status.dataset.url, {}).then(({ status: code, data }) => {
    if (code === 200 && data && !data.printed && data.reason !== "printer") {
      status.hidden = true; // switched off, or printed already
      status.dataset.state = data.reason;
      return;
    }
    const messages = data?.messages?.length ? data.messages : [{ category: "error", text: status.dataset.failed }];
    status.textContent = messages.map((m) => m.text).join(" ");
    status.classList.toggle("error", messages.some((m) => m.category === "error"));
    status.dataset.state = data?.printed ? "printed" : "failed";
  });
}
