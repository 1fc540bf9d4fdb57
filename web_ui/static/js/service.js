// The service point's forms (web_ui/service_point.py): the premium page shows the mobile
// reference or the employee account only for the payment chosen; a request form finds
// its disease as the settle page finds diagnoses, and takes photos from a file (a USB
// camera's own picker) or, where the browser has a camera, from a live picture taken
// here. The server bounds the photos again: this only says so before sending.

import { el, getJSON } from "./api.js";

const MAX_PHOTO_BYTES = 3 * 1024 * 1024;

// ---- premiums: the fields of the payment chosen ---------------------------------------------

const methods = document.getElementById("method-choice");
if (methods) {
  const show = () => {
    const method = methods.querySelector("input:checked")?.value;
    document.querySelector(".method-mobile")?.toggleAttribute("hidden", method !== "mobile");
    document.querySelector(".method-family")?.toggleAttribute("hidden", method !== "family_account");
  };
  methods.addEventListener("change", show);
  show();
}

// ---- the disease of a certificate -----------------------------------------------------------

const diseaseQuery = document.getElementById("disease-q");
if (diseaseQuery) {
  const results = document.getElementById("disease-results");
  const code = document.getElementById("disease_code");
  const chosen = document.getElementById("disease-chosen");
  let asked = 0;
  const choose = (hit) => {
    asked += 1; // an answer still on its way must not bring the list back
    code.value = hit.code;
    chosen.textContent = `${hit.code} ${hit.name}`;
    results.replaceChildren();
    delete results.dataset.query;
  };
  diseaseQuery.addEventListener("input", async () => {
    const query = diseaseQuery.value.trim();
    const mine = ++asked;
    if (!query) {
      results.replaceChildren();
      delete results.dataset.query;
      return;
    }
    const { status, data } = await getJSON(`${diseaseQuery.dataset.src}?q=${encodeURIComponent(query)}`);
    if (mine !== asked || status !== 200 || !Array.isArray(data)) return;
    results.replaceChildren(
      ...data.map((hit) => {
        const option = el("li", { role: "option", tabIndex: 0, "data-code": hit.code, "aria-selected": "false" },
          `${hit.name} `, el("span", { class: "mono", text: hit.code }));
        option.addEventListener("click", () => choose(hit));
        option.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            choose(hit);
          }
        });
        return option;
      }),
    );
    results.dataset.query = query; // what the list answers (the tests wait on it)
  });
}

// ---- photos ----------------------------------------------------------------------------------

const form = document.getElementById("request-form");
const files = document.getElementById("photo-files");
if (form && files) {
  const count = document.getElementById("photo-count");
  const problem = document.getElementById("photo-error");
  const max = Number(form.dataset.maxPhotos);
  const check = () => {
    const list = [...files.files];
    count.textContent = list.length ? count.dataset.some.replace("{n}", String(list.length)) : count.dataset.none;
    let text = "";
    if (list.length > max) text = form.dataset.tooMany;
    else if (list.some((file) => file.size > MAX_PHOTO_BYTES)) text = form.dataset.tooLarge;
    problem.textContent = text;
    problem.hidden = !text;
    return !text;
  };
  files.addEventListener("change", check);
  form.addEventListener("submit", (event) => {
    if (!check()) event.preventDefault();
  });

  // A live picture: the camera's stream drawn on a canvas and kept as a JPEG, added to
  // the photos already chosen.
  const start = document.getElementById("camera-start");
  const camera = document.getElementById("camera");
  const video = document.getElementById("camera-video");
  if (navigator.mediaDevices?.getUserMedia) {
    start.hidden = false;
    start.addEventListener("click", async () => {
      try {
        video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
        camera.hidden = false;
      } catch {
        start.hidden = true; // no camera here: the file picker stays
      }
    });
    document.getElementById("camera-shoot").addEventListener("click", () => {
      const canvas = el("canvas", { width: video.videoWidth || 1280, height: video.videoHeight || 720 });
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      canvas.toBlob((blob) => {
        if (!blob) return;
        const all = new DataTransfer();
        for (const file of files.files) all.items.add(file);
        all.items.add(new File([blob], `camera-${all.items.length + 1}.jpg`, { type: "image/jpeg" }));
        files.files = all.files;
        check();
      }, "image/jpeg", 0.85);
    });
  }
}
