import { attachKeypad } from "./keypad.js";

const pin = document.getElementById("pin");
const keypad = document.querySelector(".signin-form .keypad");
if (pin && keypad) attachKeypad(keypad, pin, { decimals: false, maxLength: 8 });
