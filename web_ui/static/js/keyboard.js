// The on-screen keyboard: a kiosk has no physical keyboard, so every field a doctor types
// into (the item and diagnosis search: pinyin initials, codes; a reversal note) has one.
// A field opts in with `data-osk="letters"` (letters and digits) or `data-osk="numbers"`;
// tapping it docks the keyboard at the bottom of the screen, and each key types into the
// field as if typed (an `input` event follows), so the page reacts exactly as to a real
// keyboard, which keeps working alongside. `inputmode="none"` keeps a tablet's own
// keyboard from covering ours.
//
// A field that also takes Chinese (`data-osk-ime`, the search fields) gets a row of
// candidate characters above the keys: the letters just before the caret are taken as
// pinyin (a syllable or its start, xi → 西 希 息 …), and tapping a character puts it in
// place of those letters. Letters left unconverted stay letters (pinyin initials still
// search as before). The candidates are characters of the installed names (/api/ime).

import { el, getJSON } from "./api.js";

const LETTER_ROWS = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"];
const NUMBER_ROWS = ["123", "456", "789", ".0"];

export class OnScreenKeyboard {
  constructor(labels) {
    this.labels = labels;
    this.field = null;
    this.box = el("div", {
      class: "osk",
      id: "osk",
      role: "group",
      "aria-label": labels.keyboard,
      // the search lists close on a tap outside them: typing here is not outside
      "data-keyboard": "",
      hidden: true,
    });
    // Keys never take the focus from the field they type into.
    this.box.addEventListener("mousedown", (event) => event.preventDefault());
    this.box.addEventListener("click", (event) => {
      const key = event.target.closest("button[data-osk-key]");
      if (key) this.press(key.dataset.oskKey);
      const candidate = event.target.closest("button[data-osk-char]");
      if (candidate) this.choose(candidate.dataset.oskChar);
    });
    this.asked = 0; // the latest candidate request: older answers are dropped
    this.candidates = el("div", {
      class: "osk-row osk-candidates",
      role: "group",
      "aria-label": labels.candidates,
      hidden: true,
    });
    // a real keyboard typing into the field offers candidates as well
    document.addEventListener("input", (event) => {
      if (event.target === this.field) this.suggest();
    });
    document.body.append(this.box);
    document.addEventListener("focusin", (event) => {
      const target = event.target;
      if (target instanceof HTMLElement && target.dataset.osk) this.open(target);
      else if (target instanceof Element && target.matches("input, select, textarea")) this.close();
    });
    // A tap elsewhere closes it, once that tap has done its work (closing on the way down
    // would move the page under the finger); a search result picked gives the focus back
    // to its field, and the keyboard stays.
    document.addEventListener("click", (event) => {
      if (!this.field || this.box.contains(event.target)) return;
      const active = document.activeElement;
      if (active instanceof HTMLElement && active.dataset.osk) return;
      this.close();
    });
  }

  key(value, text, extra = {}) {
    return el("button", {
      type: "button",
      tabIndex: -1,
      "data-osk-key": value,
      "aria-label": extra.label || text,
      class: extra.class || "",
      text,
    });
  }

  build(kind) {
    this.box.replaceChildren();
    this.box.dataset.kind = kind;
    this.showCandidates([]);
    if (kind === "letters" && this.field && "oskIme" in this.field.dataset) {
      this.box.append(this.candidates);
    }
    const rows = kind === "numbers" ? NUMBER_ROWS : LETTER_ROWS;
    rows.forEach((row, index) => {
      const line = el("div", { class: "osk-row" });
      for (const ch of row) line.append(this.key(ch, ch));
      if (kind === "letters" && index === 2) {
        line.append(this.key("back", "⌫", { label: this.labels.back, class: "wide" }));
      }
      if (kind === "numbers" && index === 3) {
        line.append(this.key("back", "⌫", { label: this.labels.back }));
      }
      this.box.append(line);
    });
    const last = el("div", { class: "osk-row osk-actions" });
    if (kind === "letters") {
      last.append(this.key("space", this.labels.space, { class: "space" }));
    }
    last.append(
      this.key("clear", this.labels.clear, { class: "wide" }),
      this.key("done", this.labels.done, { class: "wide primary" }),
    );
    this.box.append(last);
  }

  open(field) {
    if (this.field === field && !this.box.hidden) return;
    this.field = field;
    this.build(field.dataset.osk === "numbers" ? "numbers" : "letters");
    this.box.hidden = false;
    document.body.classList.add("osk-open");
    field.scrollIntoView({ block: "start", behavior: "instant" });
  }

  close() {
    if (this.box.hidden) return;
    this.box.hidden = true;
    this.field = null;
    this.showCandidates([]);
    // The room made below the page stays: taking it away would scroll the page under a
    // finger already on its way to the next field.
  }

  press(key) {
    const field = this.field;
    if (!field) return;
    if (key === "done") {
      this.close();
      field.blur();
      return;
    }
    const value = field.value;
    const start = field.selectionStart ?? value.length;
    const end = field.selectionEnd ?? value.length;
    let next, caret;
    if (key === "back") {
      const from = start === end ? Math.max(0, start - 1) : start;
      next = value.slice(0, from) + value.slice(end);
      caret = from;
    } else if (key === "clear") {
      next = "";
      caret = 0;
    } else {
      const ch = key === "space" ? " " : key;
      const max = field.maxLength > 0 ? field.maxLength : Infinity;
      if (value.length - (end - start) + ch.length > max) return;
      next = value.slice(0, start) + ch + value.slice(end);
      caret = start + ch.length;
    }
    field.value = next;
    try {
      field.setSelectionRange(caret, caret);
    } catch {
      // a field type without a caret (number): the value is set all the same
    }
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  // The letters just before the caret, as pinyin: where they start, and what they are.
  pending() {
    const field = this.field;
    if (!field || !("oskIme" in field.dataset)) return null;
    const caret = field.selectionStart ?? field.value.length;
    const match = /[a-z]+$/i.exec(field.value.slice(0, caret));
    if (!match || match[0].length > 32) return null;
    return { from: caret - match[0].length, to: caret, pinyin: match[0].toLowerCase() };
  }

  async suggest() {
    const asked = ++this.asked;
    const run = this.pending();
    if (!run) {
      this.showCandidates([]);
      return;
    }
    // Free text (a name, a village) draws on the characters in common use too.
    const set = this.field.dataset.oskIme === "text" ? "text" : "names";
    const { status, data } = await getJSON(
      `/api/ime?pinyin=${encodeURIComponent(run.pinyin)}&set=${set}`,
    );
    if (asked !== this.asked) return;
    this.showCandidates(status === 200 && data ? data.candidates : [], run.pinyin);
  }

  // The row says which letters it answers (data-pinyin): an answer to fewer letters is
  // never mistaken for the answer to what is typed now.
  showCandidates(chars, pinyin = "") {
    this.candidates.dataset.pinyin = pinyin;
    this.candidates.replaceChildren(
      ...chars.map((ch) =>
        el("button", { type: "button", tabIndex: -1, "data-osk-char": ch, text: ch }),
      ),
    );
    this.candidates.hidden = chars.length === 0;
    document.body.classList.toggle("osk-candidates-open", chars.length > 0);
  }

  choose(ch) {
    const field = this.field;
    const run = this.pending();
    if (!field || !run) return;
    const value = field.value;
    const max = field.maxLength > 0 ? field.maxLength : Infinity;
    const next = value.slice(0, run.from) + ch + value.slice(run.to);
    if (next.length > max) return;
    field.value = next;
    const caret = run.from + ch.length;
    field.setSelectionRange(caret, caret);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

// One keyboard per page, made when the page includes templates/_osk.html (its labels are
// translated on the server).
const holder = document.getElementById("osk-labels");
export const keyboard = holder ? new OnScreenKeyboard(JSON.parse(holder.dataset.labels)) : null;
