// relay console: a confirmation before bulk actions, live refresh (the overview, the live
// tail, an event's delivery states), and "Copy as curl".
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (!question) return;
  let text = question;
  if (form.id === "selection") {
    const picked = document.querySelectorAll('input[form="selection"][name="delivery"]:checked');
    if (picked.length === 0) { event.preventDefault(); alert("Select at least one delivery."); return; }
    text = `Replay ${picked.length} selected deliver${picked.length === 1 ? "y" : "ies"}?`;
  }
  if (!window.confirm(text)) event.preventDefault();
});

for (const region of document.querySelectorAll("[data-refresh]")) {
  const url = region.getAttribute("data-refresh");
  const every = Number(region.getAttribute("data-every") || 5000);
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.status === 401) {  // the session ended: sign in, then come back here
        const back = window.location.pathname + window.location.search;
        window.location.assign("/ui/login?next=" + encodeURIComponent(back));
        return;
      }
      if (response.ok) region.innerHTML = await response.text();
    } catch (error) { /* offline for a moment: try again next time */ }
  }, every);
}

// Parts of a page that change (an event's delivery states): each [data-part] the fragment
// holds replaces the element with its id, only when it changed, so whatever else is open on
// the page (a "Copy as curl", a scroll position) stays. A fragment marked data-done ends it.
for (const region of document.querySelectorAll("[data-refresh-parts]")) {
  const url = region.getAttribute("data-refresh-parts");
  const every = Number(region.getAttribute("data-every") || 5000);
  const timer = setInterval(async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.status === 401) {
        const back = window.location.pathname + window.location.search;
        window.location.assign("/ui/login?next=" + encodeURIComponent(back));
        return;
      }
      if (!response.ok) return;
      const holder = document.createElement("template");
      holder.innerHTML = await response.text();
      for (const part of holder.content.querySelectorAll("[data-part]")) {
        const shown = document.getElementById(part.id);
        if (shown && shown.innerHTML !== part.innerHTML) shown.replaceWith(part);
      }
      if (holder.content.querySelector("[data-done]")) clearInterval(timer);
    } catch (error) { /* offline for a moment: try again next time */ }
  }, every);
}

// "Copy as curl" (and any button with data-copy): the named element's text to the clipboard.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = "Copied";
  } catch (error) {  // no clipboard (plain HTTP from afar): select it for Ctrl+C instead
    const range = document.createRange();
    range.selectNodeContents(source);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
});
