// Placeholder: the settings page's script (owned by the page branch). It reads the session
// from /settings/api/session (cookie auth) and shows who is signed in.
"use strict";
fetch("api/session", { credentials: "same-origin" })
  .then((r) => r.json())
  .then((s) => {
    document.getElementById("status").textContent = s.user_id ? `Signed in as ${s.email}` : "No session.";
  })
  .catch(() => {
    document.getElementById("status").textContent = "Could not load the session.";
  });
