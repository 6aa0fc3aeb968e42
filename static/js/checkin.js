// Check-in at the door: scans ticket QR codes with the camera where the browser has a
// BarcodeDetector that reads them, and sends each code through the same form as a
// typed one. Typing always works; without a detector the page says so.
(() => {
  const start = document.getElementById("scan-start");
  const stop = document.getElementById("scan-stop");
  const note = document.getElementById("scan-note");
  const video = document.getElementById("scan-video");
  if (!start || !video) return;
  const SCAN_EVERY_MS = 250;
  // A code held in front of the camera is sent once; it counts as a new scan only
  // after it has been out of view this long.
  const SAME_CODE_PAUSE_MS = 3000;
  let stream = null;
  let timer = null;
  let last = { code: null, seenAt: 0 };

  const say = (text) => { note.textContent = text; note.hidden = !text; };

  const submit = (code) => {
    // The form is swapped after every answer: find the current one.
    const form = document.getElementById("checkin-form");
    form.elements.code.value = code;
    form.requestSubmit();
  };

  const stopCamera = () => {
    clearInterval(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    video.hidden = true;
    stop.hidden = true;
    start.hidden = false;
  };

  const startCamera = async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (err) {
      say(`The camera is not available (${err.name}). Type the code instead.`);
      return;
    }
    say("");
    video.srcObject = stream;
    video.hidden = false;
    start.hidden = true;
    stop.hidden = false;
    await video.play();
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    timer = setInterval(async () => {
      if (video.readyState < 2) return;
      const found = await detector.detect(video).catch(() => []);
      const code = found.length ? found[0].rawValue : "";
      if (!code) return;
      const now = Date.now();
      const stillInView = code === last.code && now - last.seenAt < SAME_CODE_PAUSE_MS;
      last = { code, seenAt: now };
      if (!stillInView) submit(code);
    }, SCAN_EVERY_MS);
  };

  const canScan = async () => {
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices) return false;
    const formats = await window.BarcodeDetector.getSupportedFormats().catch(() => []);
    return formats.includes("qr_code");
  };

  // While scanning, keep a phone's keyboard away: each answer's new field takes focus.
  document.body.addEventListener("htmx:load", () => {
    if (stream) document.getElementById("checkin-code")?.blur();
  });

  canScan().then((ok) => {
    if (!ok) {
      say("This browser cannot read QR codes from the camera: type the code.");
      return;
    }
    start.hidden = false;
    start.addEventListener("click", startCamera);
    stop.addEventListener("click", stopCamera);
  });
})();
