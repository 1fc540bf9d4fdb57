// The settle page: card polling, diagnosis and item search, quantities, the live split
// (asked from the server on every change) and confirmation. Amounts arrive formatted.

import { debounce, el, getJSON, postJSON } from "./api.js";
import { QuantityKeypad } from "./keypad.js";
import "./keyboard.js";

const root = document.getElementById("settle");
const S = JSON.parse(root.dataset.strings);
const hasPatient = root.dataset.hasPatient === "1";
const draft = JSON.parse(root.dataset.draft || "null");
const WHOLE_UNITS = new Set(JSON.parse(root.dataset.wholeUnits || "[]"));
// 设备已停用: the county has withdrawn this terminal. The server refuses to settle anyway;
// the button is greyed out with the reason as soon as the status strip says so.
let withdrawn = document.getElementById("status-strip")?.dataset.state === "revoked";

// ---- the card reader: read by itself when a card is inserted ------------------------------

const SEEN = "clinic.card-attempted";

async function pollCard() {
  const { status, data } = await getJSON("/api/card");
  const line = document.getElementById("card-status");
  if (status === 200 && data) {
    if (data.error) {
      line.textContent = data.error.message;
    } else if (data.present) {
      // Read each inserted card once: a failed read is not retried until a card goes in.
      if (sessionStorage.getItem(SEEN) !== String(data.insertions)) {
        sessionStorage.setItem(SEEN, String(data.insertions));
        line.textContent = S.card_present;
        document.getElementById("card-form").requestSubmit();
        return;
      }
    } else {
      sessionStorage.removeItem(SEEN);
      line.textContent = S.insert_card;
    }
  }
  setTimeout(pollCard, Number(root.dataset.pollMs) || 1000);
}

if (!hasPatient && root.dataset.hasReader === "1") {
  pollCard();
}

// ---- the visit being built ------------------------------------------------------------------

// The visit lives on the terminal (the draft): the page starts from it and sends every
// change back, so a reload, another tab, a language switch or the idle lock loses nothing.
const state = {
  diagnoses: draft ? draft.diagnoses.map((d) => ({ code: d.code, name: d.name })) : [],
  lines: draft ? draft.lines.map((l) => ({ ...l })) : [],
};
const keypad = new QuantityKeypad(document.getElementById("keypad"));
let quoteSeq = 0;
let quoteOk = false;
let draftRev = 0;
let draftKept = 0; // the newest rev the terminal has acknowledged
let draftSent = draft ? JSON.stringify(draftBody(visitDocument())) : "";

function draftBody(visit) {
  return { visit_type: visit.visit_type, diagnoses: visit.diagnoses, lines: visit.lines,
    use_personal_account: visit.use_personal_account,
    use_family_account: visit.use_family_account,
    family_account_holder: visit.family_account_holder };
}

// Keep the visit on the terminal: after each change, and with `keepalive` as the page goes.
function keepDraft(leaving = false) {
  if (!draft) return;
  const body = draftBody(visitDocument());
  const text = JSON.stringify(body);
  if (text === draftSent) {
    // Nothing new to send; "0" only once what was sent is kept (it may be on its way).
    if (!leaving && draftKept === draftRev) root.dataset.draftPending = "0";
    return;
  }
  if (!leaving) root.dataset.draftPending = "1";
  draftSent = text;
  draftRev = Math.max(Date.now(), draftRev + 1);
  const sent = draftRev;
  const payload = JSON.stringify({ draft_id: draft.draft_id, rev: draftRev, visit: body });
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/json",
    "X-CSRFToken": document.querySelector('meta[name="csrf-token"]')?.content ?? "",
  };
  fetch("/api/draft", { method: "POST", headers, body: payload, keepalive: leaving,
    credentials: "same-origin" })
    .then((response) => {
      if (!response.ok) return;
      draftKept = Math.max(draftKept, sent);
      if (sent === draftRev) root.dataset.draftPending = "0";
    })
    .catch(() => { if (!leaving) draftSent = ""; });
}
const keepDraftLater = debounce(() => keepDraft(false), 150);
function keepDraftSoon() {
  root.dataset.draftPending = "1"; // for tests: "0" once the terminal has the latest
  keepDraftLater();
}
window.addEventListener("pagehide", () => keepDraft(true));
document.addEventListener("clinic:lock", () => keepDraft(true));

function visitDocument() {
  const type = document.querySelector('input[name="visit_type"]:checked');
  const account = document.getElementById("use-account");
  const family = document.getElementById("use-family-account");
  const holder = document.querySelector('input[name="family_holder"]:checked');
  const useFamily = family ? family.checked : false;
  return {
    visit_type: type ? type.value : "general",
    diagnoses: state.diagnoses.map((d) => d.code),
    lines: state.lines.map((l) => ({ code: l.code, quantity: l.quantity })),
    use_personal_account: account ? account.checked : false,
    // 家庭共济: whose shared account pays (one holder: the checkbox names them)
    use_family_account: useFamily,
    family_account_holder: useFamily ? holder?.value || family.dataset.holder || null : null,
  };
}

function clearErrors() {
  for (const slot of document.querySelectorAll("[data-error]")) slot.textContent = "";
  for (const row of document.querySelectorAll("#lines tr.has-error")) {
    row.classList.remove("has-error");
  }
  for (const slot of document.querySelectorAll("#lines .line-error")) slot.textContent = "";
}

function showErrors(errors) {
  for (const error of errors || []) {
    const text = error.message;
    if (error.field === "line" && error.line !== undefined) {
      const row = document.querySelector(`#lines tr[data-index="${error.line}"]`);
      if (row) {
        row.classList.add("has-error");
        row.querySelector(".line-error").textContent = text;
        continue;
      }
    }
    const slot =
      document.querySelector(`[data-error="${error.field}"]`) ||
      document.querySelector('[data-error="form"]');
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
  }
}

function setAmounts(split) {
  for (const node of document.querySelectorAll("[data-amount]")) {
    node.textContent = split ? split[node.dataset.amount] : "¥0.00";
  }
}

// Who pays, in the chain's order, between the total and the cash; and why the fund paid
// what it did when a cap held it back.
function setPayers(payers, fundLimit) {
  const list = document.getElementById("payers");
  for (const node of list.querySelectorAll("[data-payer]")) node.remove();
  const cash = document.getElementById("cash-label");
  for (const payer of payers || []) {
    const named = payer.name ? { "data-name": payer.name } : {};
    const label = el("dt", { "data-payer": payer.payer, ...named }, payer.label);
    if (payer.detail) label.append(" ", el("small", { class: "payer-detail", text: payer.detail }));
    list.insertBefore(label, cash);
    const amount = el("dd", { class: "money", "data-payer": payer.payer, ...named, text: payer.amount });
    list.insertBefore(amount, cash);
  }
  const sentence = document.getElementById("fund-limit");
  sentence.textContent = fundLimit ? fundLimit.message : "";
  if (fundLimit) sentence.dataset.code = fundLimit.code;
  else delete sentence.dataset.code;
  sentence.hidden = !fundLimit;
}

function renderLines() {
  const body = document.querySelector("#lines tbody");
  body.replaceChildren();
  state.lines.forEach((line, index) => {
    const qty = el("input", {
      class: "qty",
      value: line.quantity,
      inputMode: "decimal",
      "aria-label": `${S.quantity} ${line.name}`,
      autocomplete: "off",
    });
    qty.addEventListener("input", () => {
      line.quantity = qty.value.trim();
      requote();
    });
    // On the click that ends a tap (not on the finger's lifting: the tap's own click would
    // then land on whatever key of the pad opened under it).
    qty.addEventListener("click", (event) => {
      if (event.pointerType === "mouse") return;
      keypad.open(line.quantity, WHOLE_UNITS.has(line.unit), (value) => {
        if (value !== null) {
          line.quantity = value;
          qty.value = value;
          requote();
        }
        qty.focus();
      });
    });
    const remove = el("button", {
      type: "button",
      class: "small remove",
      text: "×",
      "aria-label": `${S.remove} ${line.name}`,
    });
    remove.addEventListener("click", () => {
      state.lines.splice(index, 1);
      renderLines();
      requote();
    });
    body.append(
      el(
        "tr",
        { "data-index": String(index), "data-code": line.code },
        el(
          "td",
          { class: "item" },
          el("span", { class: "item-name", text: line.name }),
          el("small", { class: "item-price", text: ` ${line.spec || ""} ${line.price || ""}` }),
          el("ul", { class: "reasons" }),
          el("p", { class: "line-error field-error", role: "alert" }),
        ),
        el("td", {}, qty),
        el("td", { class: "money line-amount" }),
        el("td", {}, remove),
      ),
    );
  });
}

function applyView(view) {
  for (const row of document.querySelectorAll("#lines tbody tr")) {
    const shown = view?.lines?.[Number(row.dataset.index)];
    row.querySelector(".line-amount").textContent = shown ? shown.amount : "";
    const reasons = row.querySelector(".reasons");
    reasons.replaceChildren();
    for (const reason of shown?.reasons || []) {
      reasons.append(el("li", { text: reason.message, "data-code": reason.code }));
    }
  }
}

// For tests: "1" from a change until the split shown answers the visit as it is now.
let quoteAsked = 0;
function quoteAnswered(asked) {
  if (asked === quoteAsked) root.dataset.quotePending = "0";
}

async function quote() {
  const seq = ++quoteSeq;
  const asked = quoteAsked;
  const confirmButton = document.getElementById("confirm");
  const hint = document.getElementById("split-hint");
  if (state.lines.length === 0) {
    quoteOk = false;
    clearErrors();
    setAmounts(null);
    setPayers(null, null);
    applyView(null);
    document.getElementById("warnings").replaceChildren();
    confirmButton.disabled = true;
    quoteAnswered(asked);
    hint.textContent = S.add_item;
    return;
  }
  const { status, data } = await postJSON("/api/quote", visitDocument());
  if (seq !== quoteSeq) return; // an answer to an older question
  clearErrors();
  hint.textContent = "";
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren();
  if (status === 200 && data?.ok) {
    setAmounts(data.split);
    setPayers(data.payers, data.fund_limit);
    applyView(data);
    for (const w of data.warnings) {
      warnings.append(el("li", { class: "warning", text: w.message, "data-code": w.code }));
    }
    showErrors(data.errors);
    quoteOk = !(data.errors && data.errors.length);
  } else {
    quoteOk = false;
    setAmounts(null);
    setPayers(null, null);
    applyView(null);
    if (data?.errors) showErrors(data.errors);
    else if (data?.error) showErrors([data.error]);
    else showErrors([{ field: "form", message: S.network }]);
  }
  confirmButton.disabled = withdrawn || !quoteOk || state.lines.length === 0;
  root.dataset.quoted = String(seq);
  quoteAnswered(asked);
}

// 设备已停用 (see `withdrawn` above): the button greyed out, the reason next to it.
function showWithdrawn() {
  const confirmButton = document.getElementById("confirm");
  const note = document.getElementById("confirm-withdrawn");
  if (!confirmButton || !note) return;
  note.hidden = !withdrawn;
  if (withdrawn) confirmButton.disabled = true;
  else quote();
}

document.addEventListener("clinic:status", (event) => {
  const now = event.detail?.state === "revoked";
  if (now === withdrawn) return;
  withdrawn = now;
  showWithdrawn();
});

const quoteSoon = debounce(quote, 120);
function requote() {
  keepDraftSoon();
  quoteAsked += 1;
  root.dataset.quotePending = "1";
  quoteSoon();
}

// ---- searching ---------------------------------------------------------------------------------

function searchBox(input, list, url, render, pick, onEnterWithout) {
  let results = [];
  const run = debounce(async () => {
    const q = input.value.trim();
    if (!q) {
      list.hidden = true;
      list.replaceChildren();
      delete list.dataset.query;
      results = [];
      return;
    }
    const { status, data } = await getJSON(`${url}?q=${encodeURIComponent(q)}`);
    if (input.value.trim() !== q) return;
    results = status === 200 && Array.isArray(data) ? data : [];
    list.replaceChildren();
    if (results.length === 0) {
      // A listbox holds options only: "nothing found" is one that cannot be chosen.
      list.append(el("li", { class: "none", role: "option", "aria-disabled": "true", text: S.no_match }));
    }
    results.forEach((hit, i) => {
      // A roving tab stop: Tab reaches the list (and so its scrolled part), arrows move in it.
      const option = el("li", { role: "option", tabIndex: i === 0 ? 0 : -1, "data-code": hit.code }, ...render(hit));
      option.addEventListener("click", () => choose(i));
      option.addEventListener("keydown", (event) => {
        if (event.key === "Enter") choose(i);
        else if (event.key === "ArrowDown") option.nextElementSibling?.focus();
        else if (event.key === "ArrowUp") (option.previousElementSibling || input).focus();
        else if (event.key === "Escape") input.focus();
        else return;
        event.preventDefault();
      });
      list.append(option);
    });
    list.hidden = false;
    list.dataset.query = q; // what the list answers (the tests wait on it, not on time)
    // The list is in the page's flow (it covers nothing): bring it into view if it is not.
    if (list.getBoundingClientRect().bottom > window.innerHeight) list.scrollIntoView({ block: "end" });
  }, 100);

  function choose(i) {
    pick(results[i]);
    input.value = "";
    list.hidden = true;
    list.replaceChildren();
    delete list.dataset.query;
    results = [];
    input.focus();
  }

  input.addEventListener("input", run);
  // A tap anywhere outside the box closes the list (an on-screen keyboard, marked
  // data-keyboard, types into the field and is not "outside"); back in the field, it reopens.
  document.addEventListener("pointerdown", (event) => {
    if (list.hidden || input.parentElement.contains(event.target)) return;
    if (event.target.closest?.("[data-keyboard]")) return;
    list.hidden = true;
  });
  input.addEventListener("focus", () => {
    if (results.length && input.value.trim()) list.hidden = false;
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      list.querySelector("li[role=option]")?.focus();
      event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (results.length) choose(0);
      else if (onEnterWithout && input.value.trim()) {
        onEnterWithout(input.value.trim());
        input.value = "";
        list.hidden = true;
      }
    } else if (event.key === "Escape") {
      list.hidden = true;
    }
  });
}

function renderChips() {
  const box = document.getElementById("diagnoses");
  box.replaceChildren();
  state.diagnoses.forEach((d, index) => {
    const remove = el("button", { type: "button", class: "small", text: "×", "aria-label": `${S.remove} ${d.name}` });
    remove.addEventListener("click", () => {
      state.diagnoses.splice(index, 1);
      renderChips();
      requote();
    });
    box.append(el("span", { class: "chip", "data-code": d.code }, `${d.code} ${d.name} `, remove));
  });
}

function addLine(hit) {
  const existing = state.lines.find((l) => l.code === hit.code);
  if (!existing) {
    state.lines.push({ code: hit.code, name: hit.name, spec: hit.spec || "", unit: hit.unit || "", price: hit.price || "", quantity: "1" });
    keepDraft(); // at once: a line just added must survive an immediate reload
  }
  renderLines();
  document.querySelector(`#lines tr[data-code="${CSS.escape(hit.code)}"]`)?.scrollIntoView({ block: "nearest" });
  requote();
}

if (hasPatient) {
  searchBox(
    document.getElementById("diagnosis-search"),
    document.getElementById("diagnosis-results"),
    "/api/diagnoses",
    (hit) => [el("span", { class: "mono", text: hit.code }), ` ${hit.name}`],
    (hit) => {
      if (!state.diagnoses.some((d) => d.code === hit.code)) state.diagnoses.push(hit);
      renderChips();
      requote();
    },
    null,
  );
  searchBox(
    document.getElementById("item-search"),
    document.getElementById("item-results"),
    "/api/catalog",
    (hit) => [
      el("span", { class: "item-name", text: hit.name }),
      hit.frequent ? el("span", { class: "tag frequent", text: S.frequent }) : null,
      el("small", { text: ` ${hit.spec} · ${hit.price}/${hit.unit} · ${hit.class}` }),
    ],
    addLine,
    (code) => addLine({ code, name: code }), // a code typed by hand: the server judges it
  );
  for (const radio of document.querySelectorAll('input[name="visit_type"]')) {
    radio.addEventListener("change", requote);
  }
  document.getElementById("use-account")?.addEventListener("change", requote);
  document.getElementById("use-family-account")?.addEventListener("change", requote);
  for (const radio of document.querySelectorAll('input[name="family_holder"]')) {
    radio.addEventListener("change", requote);
  }
  // The visit kept on the terminal, back on the page.
  if (state.diagnoses.length) renderChips();
  if (state.lines.length) {
    renderLines();
    quote();
  }

  const confirmButton = document.getElementById("confirm");
  if (withdrawn) showWithdrawn();
  confirmButton.addEventListener("click", async () => {
    confirmButton.disabled = true;
    const label = confirmButton.textContent;
    confirmButton.textContent = S.settling;
    const { status, data } = await postJSON("/api/settle", visitDocument());
    if (status === 200 && data?.ok) {
      draftSent = JSON.stringify(draftBody(visitDocument())); // settled: nothing to keep
      window.location.assign(data.receipt_url);
      return;
    }
    confirmButton.textContent = label;
    clearErrors();
    if (status === 401) {
      // The session ended (idle lock): trying again cannot work; the lock screen follows.
      showErrors([{ field: "form", message: data?.error?.message || S.session_ended }]);
      return;
    }
    showErrors(data?.errors || [{ field: "form", message: S.network }]);
    confirmButton.disabled = withdrawn;
  });
}

// ---- bundles (组套): a visit's usual lines, applied with one tap -------------------------

function applyBundle(bundle) {
  for (const line of bundle.lines) {
    if (!state.lines.some((l) => l.code === line.code)) {
      state.lines.push({ code: line.code, name: line.name, spec: line.spec || "", unit: line.unit || "", price: line.price || "", quantity: line.quantity });
    }
  }
  for (const d of bundle.diagnoses) {
    if (!state.diagnoses.some((known) => known.code === d.code)) state.diagnoses.push(d);
  }
  renderChips();
  renderLines();
  requote();
}

function showBundles(bundles) {
  const list = document.getElementById("bundle-list");
  list.replaceChildren();
  for (const bundle of bundles) {
    const button = el("button", {
      type: "button",
      class: `bundle ${bundle.source}`,
      "data-bundle": String(bundle.id),
      "data-source": bundle.source,
      text: bundle.name,
    });
    button.addEventListener("click", async () => {
      const status = document.getElementById("bundle-status");
      const { status: code, data } = await getJSON(`/api/bundles/${bundle.id}`);
      if (code !== 200 || !data?.ok) {
        status.textContent = data?.message || S.bundle_gone;
        return;
      }
      status.textContent = data.missing.length ? `${S.bundle_missing} ${data.missing.join(", ")}` : "";
      document.getElementById("bundle-note").textContent = "";
      applyBundle(data);
    });
    list.append(button);
  }
}

async function loadBundles() {
  const { status, data } = await getJSON("/api/bundles");
  if (status === 200 && Array.isArray(data)) showBundles(data);
}

function bundleDialog() {
  const dialog = document.getElementById("bundle-dialog");
  const form = document.getElementById("bundle-form");
  const name = document.getElementById("bundle-name");
  const error = document.getElementById("bundle-error");
  const close = () => {
    dialog.hidden = true;
    document.getElementById("bundle-save").focus();
  };
  document.getElementById("bundle-save").addEventListener("click", () => {
    const status = document.getElementById("bundle-status");
    if (state.lines.length === 0) {
      status.textContent = S.bundle_empty;
      return;
    }
    status.textContent = "";
    error.textContent = "";
    // A name to start from, so that saving needs no typing: the visit's first diagnosis.
    name.value = state.diagnoses[0]?.name || state.lines[0].name || "";
    dialog.hidden = false;
    name.focus();
    name.select();
  });
  document.getElementById("bundle-cancel").addEventListener("click", close);
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { status, data } = await postJSON("/api/bundles", {
      name: name.value,
      lines: state.lines.map((l) => ({ code: l.code, quantity: l.quantity })),
      diagnoses: state.diagnoses.map((d) => d.code),
    });
    if (status === 200 && data?.ok) {
      showBundles(data.bundles);
      close();
      document.getElementById("bundle-note").textContent = S.bundle_saved;
      return;
    }
    error.textContent = data?.message || S.network;
  });
}

if (hasPatient) {
  loadBundles();
  bundleDialog();
}

root.dataset.ready = "1"; // for people and tests alike: the page now reacts to input
