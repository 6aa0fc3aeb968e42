// Shows an event's start in the viewer's own time zone, next to the event's.
document.querySelectorAll("time[data-local]").forEach((el) => {
  const target = document.getElementById("viewer-time");
  if (!target) return;
  const when = new Date(el.getAttribute("datetime"));
  const local = when.toLocaleString(undefined, { weekday: "long", day: "numeric", month: "long",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  target.querySelector("span").textContent = local;
  target.hidden = false;
});
