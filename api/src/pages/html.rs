//! HTML pieces: escaping, the layout every page shares, and the script of «Мои задачи».
use crate::auth::{CurrentUser, Role};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f2;color:#222}
header{background:#2d3e50;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff} header form{margin-left:auto} main{padding:1em 1.5em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:0 0 1em}
.narrow{max-width:22em} label{display:block;margin:.4em 0} input,select{font:inherit}
table{border-collapse:collapse;width:100%;background:#fff} th,td{border-bottom:1px solid #e3e3e3;padding:.4em;text-align:left;vertical-align:top}
.muted{color:#888;font-size:.85em} .error{color:#b00020} .notice{background:#e7f3e7;padding:.5em}
tr.new{background:#fffbe0} progress{width:12em} .actions form{display:inline}
button,.button{background:#2d3e50;color:#fff;border:0;border-radius:4px;padding:.35em .8em;cursor:pointer;text-decoration:none;font:inherit}
fieldset{border:1px solid #ddd;margin:.5em 0}";

/// A page: title, the navigation for `user` (none on the login page), the body.
pub fn layout(title: &str, user: Option<&CurrentUser>, body: &str) -> String {
    let nav = user
        .map(|u| {
            let ops = if u.role == Role::Admin {
                "<a href=\"/ops\">Операции</a>"
            } else {
                ""
            };
            format!(
                "<header><strong>АРТСВАО</strong><a href=\"/jobs\">Мои задачи</a>{ops}<span class=\"user\">{}</span>\
                 <form method=\"post\" action=\"/logout\"><button type=\"submit\">Выйти</button></form></header>",
                esc(&u.email)
            )
        })
        .unwrap_or_else(|| "<header><strong>АРТСВАО</strong></header>".into());
    format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — CRM АРТСВАО</title><style>{STYLE}</style></head><body>{nav}<main>{body}</main></body></html>",
        esc(title)
    )
}

/// Live rows. A browser keeps about six connections per site over HTTP/1.1, and the server
/// lets a user hold `SSE_PER_USER` streams: so the newest `LIVE_STREAMS` (2) unfinished rows
/// listen to their event streams (signed links; an `EventSource` cannot send a header) and
/// the others read their status every few seconds. A stream that ends (its life is capped)
/// reconnects by itself with `Last-Event-ID`; one refused (expired link, too many streams)
/// asks `/jobs/{id}/status` for fresh links and reopens, waiting longer after each refusal.
/// When a job ends, its row reads its status once more to show the download and drop the
/// cancel button. A session that expired sends the page back to `/login`.
pub const JOBS_SCRIPT: &str = r#"
(function () {
  var LIVE_STREAMS = 2, POLL_MS = 4000;
  var STATES = {queued: "в очереди", running: "выполняется", succeeded: "готово", failed: "ошибка", cancelled: "отменено"};
  var TERMINAL = {succeeded: 1, failed: 1, cancelled: 1};
  function text(el, t) { if (el) el.textContent = t; }
  function show(row, e) {
    row.dataset.state = e.state;
    text(row.querySelector(".state"), STATES[e.state] || e.state);
    var p = (e.progress && e.progress.percent) || 0;
    var bar = row.querySelector("progress");
    if (bar) bar.value = p;
    text(row.querySelector(".pct"), p + " %");
    var msg = row.querySelector(".message");
    if (msg) {
      msg.textContent = e.error || (e.progress && e.progress.message) || "";
      msg.className = "message" + (e.error ? " error" : " muted");
    }
  }
  // The status JSON with fresh links, or null; an expired session reloads into /login.
  function status(row) {
    return fetch("/jobs/" + row.dataset.id + "/status", {credentials: "same-origin"})
      .then(function (r) {
        var json = (r.headers.get("content-type") || "").indexOf("application/json") === 0;
        if (r.redirected || (r.ok && !json)) { location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .catch(function () { return null; });
  }
  function finish(row) {
    status(row).then(function (s) {
      if (!s) return;
      show(row, s);
      var actions = row.querySelector(".actions");
      if (!actions || !TERMINAL[s.state]) return;
      var cancel = actions.querySelector("form.cancel");
      if (cancel) cancel.remove();
      if (s.artifact_url && !actions.querySelector("a.download")) {
        var a = document.createElement("a");
        a.className = "download button";
        a.href = "/jobs/" + s.id + "/download";
        a.setAttribute("download", "");
        a.textContent = "Скачать";
        actions.appendChild(a);
      }
    });
  }
  function poll(row) {
    status(row).then(function (s) {
      if (s) show(row, s);
      if (s && TERMINAL[s.state]) finish(row); else setTimeout(function () { poll(row); }, POLL_MS);
    });
  }
  function listen(row, url, wait) {
    var es = new EventSource(url);
    es.addEventListener("job", function (m) {
      var e = JSON.parse(m.data);
      wait = 2000;
      // What the stream delivered, for whoever looks (the browser test reads it).
      (window.jobEvents = window.jobEvents || []).push(e);
      show(row, e);
      if (TERMINAL[e.state]) { es.close(); finish(row); }
    });
    es.onerror = function () {
      if (es.readyState !== EventSource.CLOSED || TERMINAL[row.dataset.state]) return;
      // Refused (an expired link, too many streams): fresh links after a growing pause.
      setTimeout(function () {
        status(row).then(function (s) {
          if (!s) return;
          show(row, s);
          if (TERMINAL[s.state]) finish(row); else listen(row, s.events_url, Math.min(wait * 2, 60000));
        });
      }, wait);
    };
  }
  var live = 0;
  document.querySelectorAll("tr.job").forEach(function (row) {
    if (TERMINAL[row.dataset.state]) return;
    if (live < LIVE_STREAMS) { live += 1; listen(row, row.dataset.events, 2000); }
    else setTimeout(function () { poll(row); }, POLL_MS);
  });
})();
"#;
