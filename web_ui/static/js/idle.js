// The idle lock: after the configured time without a touch or a key, the screen locks
// (the operator is signed out on the server) and the sign-in page becomes the lock screen
// that returns the same operator to the same page. A visit being built is kept on the
// terminal (the settle page saves it as it leaves), so nothing is lost.

const idleMs = Number(document.querySelector('meta[name="idle-ms"]')?.content || 0);
const token = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function lockNow() {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/lock";
  form.hidden = true;
  for (const [name, value] of [
    ["csrf_token", token],
    ["next", window.location.pathname + window.location.search],
  ]) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  document.dispatchEvent(new CustomEvent("clinic:lock"));
  form.submit();
}

if (idleMs > 0) {
  let timer = null;
  const restart = () => {
    clearTimeout(timer);
    timer = setTimeout(lockNow, idleMs);
  };
  for (const type of ["pointerdown", "keydown", "input", "wheel"]) {
    document.addEventListener(type, restart, { capture: true, passive: true });
  }
  restart();
}
