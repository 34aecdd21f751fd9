// vmwarden dashboard: the little that needs a script. Everything works without it.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form.release")) return;
  const reason = form.querySelector("input[name=reason]");
  if (reason && !reason.value.trim()) {
    event.preventDefault();
    reason.focus();
    return;
  }
  const name = form.dataset.vm;
  if (name && !window.confirm(`Release ${name} from quarantine?\n\nReason: ${reason.value}`)) {
    event.preventDefault();
  }
});
// "/" focuses the page's search box, as in most consoles.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.target.matches("input, textarea, select")) return;
  const box = document.querySelector("input[type=search]");
  if (box) { event.preventDefault(); box.focus(); }
});
