// Confirmation before a form that changes something irreversible (data-confirm holds the
// question). Loaded from 'self': the Content-Security-Policy allows no inline script.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
