// vmwarden dashboard: the little that needs a script. Everything works without it.
"use strict";
// Release and quarantine change a host: ask once, naming the VM and the reason.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const verb = form.matches("form.release") ? "Release" : form.matches("form.quarantine") ? "Quarantine" : null;
  if (!verb) return;
  const reason = form.querySelector("input[name=reason]");
  if (reason && !reason.value.trim()) {
    event.preventDefault();
    reason.focus();
    return;
  }
  const name = form.dataset.vm;
  const what = verb === "Release" ? `Release ${name} from quarantine?` : `Quarantine ${name}? Its NICs leave their networks.`;
  if (name && !window.confirm(`${what}\n\nReason: ${reason.value}`)) {
    event.preventDefault();
  }
});
// "/" focuses the page's search box, as in most consoles.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.target.matches("input, textarea, select")) return;
  const box = document.querySelector("input[type=search]");
  if (box) { event.preventDefault(); box.focus(); }
});
