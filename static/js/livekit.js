// The LiveKit glue of the room page: join the room's video with a token from our
// server, show a tile per published camera, and send our own camera and microphone
// only while the server allows it. Who may publish is decided server-side (the token's
// grants, then RoomService.UpdateParticipant when a host brings someone on stage):
// this file follows the permission LiveKit reports, it never decides it.
(function () {
  const tiles = document.getElementById("video-tiles");
  const room = document.getElementById("room");
  if (!tiles || !room || tiles.dataset.livekit !== "on" || !room.dataset.tokenUrl) return;
  const status = document.getElementById("video-status");
  const say = (text) => { if (status) status.textContent = text; };
  if (!window.LivekitClient) { say("Video could not load in this browser."); return; }
  const LK = window.LivekitClient;

  let current = null;     // the connected LivekitClient.Room
  let attempts = 0;       // reconnects since the last success, for the backoff
  let leaving = false;

  async function fetchToken() {
    const response = await fetch(room.dataset.tokenUrl, {
      credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(body.error || "Video is unavailable."), { status: response.status });
    return body;
  }

  function tileFor(participant) {
    const id = "tile-" + participant.identity;
    let tile = document.getElementById(id);
    if (!tile) {
      tile = document.createElement("figure");
      tile.id = id;
      tile.className = "video-tile";
      tile.dataset.identity = participant.identity;
      const caption = document.createElement("figcaption");
      caption.textContent = participant.name || participant.identity;
      tile.appendChild(caption);
      tiles.appendChild(tile);
    }
    return tile;
  }

  function dropTile(participant) {
    const tile = document.getElementById("tile-" + participant.identity);
    if (tile) tile.remove();
  }

  function show(track, participant) {
    if (track.kind !== "video" && track.kind !== "audio") return;
    const element = track.attach();
    if (track.kind === "video") {
      const tile = tileFor(participant);
      tile.insertBefore(element, tile.firstChild);
    } else {
      element.hidden = true;
      tiles.appendChild(element);  // audio plays without a tile of its own
    }
  }

  function hide(track, participant) {
    track.detach().forEach((element) => element.remove());
    const tile = document.getElementById("tile-" + participant.identity);
    if (tile && !tile.querySelector("video")) tile.remove();
  }

  // Publish while allowed; stop when the host takes the stage back.
  async function followPermission(lk) {
    const me = lk.localParticipant;
    const allowed = Boolean(me.permissions && me.permissions.canPublish);
    try {
      if (allowed && !me.isCameraEnabled) {
        await me.setCameraEnabled(true);
        await me.setMicrophoneEnabled(true);
        say("You are live on stage.");
      } else if (!allowed && me.isCameraEnabled) {
        await me.setCameraEnabled(false);
        await me.setMicrophoneEnabled(false);
        say("");
      }
    } catch (err) {
      say("Your camera or microphone is not available: " + err.message);
    }
  }

  async function connect() {
    let details;
    try {
      details = await fetchToken();
    } catch (err) {
      say(err.message);
      if (err.status >= 500 || err.status === undefined) retryLater();
      return;
    }
    const lk = new LK.Room({ adaptiveStream: true, dynacast: true });
    lk.on(LK.RoomEvent.TrackSubscribed, (track, _pub, participant) => show(track, participant))
      .on(LK.RoomEvent.TrackUnsubscribed, (track, _pub, participant) => hide(track, participant))
      .on(LK.RoomEvent.LocalTrackPublished, (pub) => { if (pub.track) show(pub.track, lk.localParticipant); })
      .on(LK.RoomEvent.LocalTrackUnpublished, (pub) => { if (pub.track) hide(pub.track, lk.localParticipant); })
      .on(LK.RoomEvent.ParticipantDisconnected, dropTile)
      .on(LK.RoomEvent.ParticipantPermissionsChanged, (_before, participant) => {
        if (!participant || participant === lk.localParticipant) followPermission(lk);
      })
      .on(LK.RoomEvent.Disconnected, () => {
        tiles.replaceChildren();
        current = null;
        if (!leaving) retryLater();  // LiveKit's own resume gave up: start over with a new token
      });
    try {
      await lk.connect(details.url, details.token);
    } catch (err) {
      say("Could not reach the video server. Retrying…");
      retryLater();
      return;
    }
    current = lk;
    attempts = 0;
    say("");
    followPermission(lk);
  }

  function retryLater() {
    // Full jitter, capped: a room whose video server restarts does not stampede back.
    const cap = Math.min(30000, 1000 * 2 ** attempts);
    attempts += 1;
    setTimeout(connect, Math.random() * cap);
  }

  window.addEventListener("pagehide", () => {
    leaving = true;
    if (current) current.disconnect();
  });
  connect();
})();
