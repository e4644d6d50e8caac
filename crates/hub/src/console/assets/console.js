// rephub console: the few things a server-rendered page cannot do alone.
// Served from the hub (the Content-Security-Policy allows no inline script and no other origin).
"use strict";

// Import with a real progress bar: upload the file, then follow the import job on the hub
// (bytes parsed out of the file's size) until it reports its summary.
function setupImport(form) {
  const status = document.getElementById("import-status");
  const bar = document.getElementById("import-progress");
  const percent = document.getElementById("import-percent");
  const result = document.getElementById("import-result");
  const csrf = document.body.dataset.csrf;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) { result.textContent = "Choose a file first."; status.hidden = false; return; }
    const q = new URLSearchParams({
      format: form.elements.format.value, type: form.elements.type.value,
      source: form.elements.source.value,
    });
    status.hidden = false;
    bar.value = 0; percent.textContent = "0 %"; result.textContent = "Uploading…";
    const res = await fetch(form.dataset.import + "?" + q, {
      method: "POST", body: file, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "X-File-Name": file.name, "Content-Type": "application/octet-stream" },
    });
    const started = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = started.error || {};
      result.textContent = (e.field ? e.field + ": " : "") + (e.message || res.statusText);
      return;
    }
    result.textContent = "Importing…";
    for (let i = 0; i < 100000; i++) {
      const p = await (await fetch(started.progress, { credentials: "same-origin" })).json();
      bar.value = p.percent; percent.textContent = p.percent + " %";
      if (p.done) {
        if (p.error) {
          result.textContent = "Failed: " + p.error.message;
        } else {
          const r = p.result;
          result.textContent = `Done: ${r.accepted} accepted (${r.added} added, ${r.updated} updated, ` +
            `${r.unchanged} unchanged), ${r.rejected} rejected` +
            (r.rejects && r.rejects.length ? ` — first: line ${r.rejects[0].line}: ${r.rejects[0].reason}` : "");
        }
        result.id = "import-done";
        return;
      }
      await new Promise((ok) => setTimeout(ok, 200));
    }
  });
}

// URLs go to an SMS from 5.0 on: the URL boxes follow the version typed.
function setupTarget(form) {
  const version = form.elements.version;
  if (!version) return;
  const sync = () => {
    const major = parseInt(version.value, 10);
    for (const box of form.querySelectorAll("input[value=url]")) {
      box.disabled = !(major >= 5);
      if (box.disabled) box.checked = false;
    }
  };
  version.addEventListener("input", sync);
}

document.addEventListener("DOMContentLoaded", () => {
  const imp = document.getElementById("import-form");
  if (imp) setupImport(imp);
  const target = document.getElementById("target-form");
  if (target) setupTarget(target);
  for (const b of document.querySelectorAll("button.danger")) {
    b.addEventListener("click", (ev) => { if (!confirm("Delete? This cannot be undone.")) ev.preventDefault(); });
  }
});
