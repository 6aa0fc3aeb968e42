// The room page: htmx's ws extension holds the socket (reconnecting with jittered
// backoff, its "full-jitter" default); this file only keeps the chat readable.
(function () {
  const room = document.getElementById("room");
  if (!room) return;
  if (window.htmx) {
    // Spread reconnects after a server restart so a room does not stampede back.
    htmx.config.wsReconnectDelay = "full-jitter";
  }
  const messages = () => document.getElementById("chat-messages");
  const nearBottom = (el) => el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  let stick = true;
  const box = messages();
  if (box) {
    box.scrollTop = box.scrollHeight;
    box.addEventListener("scroll", () => { stick = nearBottom(box); });
  }
  // A socket that comes back (a restart, a network blip) asks for what it missed:
  // newer chat and the stage as it is now. The first open has it all in the page.
  let opened = false;
  document.body.addEventListener("htmx:wsOpen", (evt) => {
    if (opened) {
      const last = document.querySelector("#chat-messages [data-testid=chat-message]:last-of-type");
      evt.detail.socketWrapper.send(JSON.stringify({
        type: "catch_up", last_message_id: last ? last.id.replace(/^msg-/, "") : null,
      }), evt.detail.elt);
    }
    opened = true;
  });
  // After the server pushes a fragment, keep the newest message in view unless
  // the reader scrolled up to read older ones.
  document.body.addEventListener("htmx:wsAfterMessage", () => {
    const el = messages();
    if (el && stick) el.scrollTop = el.scrollHeight;
  });
  // A sent message clears the form (the server answers with a fresh one); keep focus there.
  document.body.addEventListener("htmx:afterSwap", (evt) => {
    if (evt.detail.target && evt.detail.target.id === "chat-form") {
      const input = document.querySelector("#chat-form input[name=body]");
      if (input) input.focus();
    }
  });
})();
