// A touch keypad for numbers. `attachKeypad(container, input)` makes the buttons of a
// `.keypad` type into `input`; `QuantityKeypad` is the modal used for line quantities (an
// item counted in whole units, boxes or tablets, gets no decimal point: web_ui/quantities.py).

export function applyKey(value, key, { decimals = true, maxLength = 10 } = {}) {
  if (key === "back") return value.slice(0, -1);
  if (key === "clear") return "";
  if (key === ".") {
    if (!decimals || value.includes(".")) return value;
    return (value || "0") + ".";
  }
  if (value.length >= maxLength) return value;
  if (value === "0") return key;
  return value + key;
}

export function attachKeypad(container, input, options) {
  container.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (!button) return;
    input.value = applyKey(input.value, button.dataset.key, options);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

export class QuantityKeypad {
  constructor(overlay) {
    this.overlay = overlay;
    this.output = overlay.querySelector("#keypad-value");
    this.value = "";
    this.whole = false;
    this.onDone = null;
    overlay.querySelector(".keypad").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-key]");
      if (button) this.press(button.dataset.key);
    });
    overlay.querySelector("#keypad-ok").addEventListener("click", () => this.close(true));
    overlay.querySelector("#keypad-cancel").addEventListener("click", () => this.close(false));
    overlay.addEventListener("keydown", (event) => {
      if (/^[0-9.]$/.test(event.key)) this.press(event.key);
      else if (event.key === "Backspace") this.press("back");
      else if (event.key === "Enter") this.close(true);
      else if (event.key === "Escape") this.close(false);
      else return;
      event.preventDefault();
    });
  }

  press(key) {
    this.value = applyKey(this.value, key, { decimals: !this.whole, maxLength: 10 });
    this.output.textContent = this.value;
  }

  open(initial, whole, onDone) {
    this.value = "";
    this.whole = Boolean(whole);
    const point = this.overlay.querySelector('button[data-key="."]');
    if (point) point.disabled = this.whole;
    this.output.textContent = initial;
    this.onDone = onDone;
    this.overlay.hidden = false;
    this.overlay.querySelector("#keypad-ok").focus();
  }

  close(accept) {
    this.overlay.hidden = true;
    const done = this.onDone;
    this.onDone = null;
    if (done) done(accept && this.value !== "" ? this.value : null);
  }
}
