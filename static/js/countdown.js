// Counts a hold down to zero, then reloads so the page says the seats were released.
document.querySelectorAll("[data-countdown]").forEach((el) => {
  let left = parseInt(el.dataset.countdown, 10);
  const tick = () => {
    left -= 1;
    if (left <= 0) { window.location.reload(); return; }
    el.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
});
