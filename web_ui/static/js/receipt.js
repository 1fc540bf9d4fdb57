// The paper layout of the receipt, fetched after the page is shown.

const paper = document.getElementById("receipt-text");
if (paper?.dataset.src) {
  fetch(paper.dataset.src, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.text() : ""))
    .then((text) => {
      paper.textContent = text;
    })
    .catch(() => {});
}
