// The on-screen keyboard: a kiosk has no physical keyboard, so every field a doctor types
// into (the item and diagnosis search: pinyin initials, codes; a reversal note) has one.
// A field opts in with `data-osk="letters"` (letters and digits) or `data-osk="numbers"`;
// tapping it docks the keyboard at the bottom of the screen, and each key types into the
// field as if typed (an `input` event follows), so the page reacts exactly as to a real
// keyboard, which keeps working alongside. `inputmode="none"` keeps a tablet's own
// keyboard from covering ours.

import { el } from "./api.js";

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
}

// One keyboard per page, made when the page includes templates/_osk.html (its labels are
// translated on the server).
const holder = document.getElementById("osk-labels");
export const keyboard = holder ? new OnScreenKeyboard(JSON.parse(holder.dataset.labels)) : null;
