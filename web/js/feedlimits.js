// The server's limits on what the feed page sends (docs/protocol.md, "The community feed",
// Limits), shown before they are reached: a counter appears near the limit, and nothing typed
// or pasted is ever cut (no maxlength), so the number the user reads is what they wrote.

export const LIMITS = Object.freeze({ post: 10_000, comment: 2_000, title: 200 });

const NEAR = 0.9; // the counter shows from this share of the limit

const format = (n) => n.toLocaleString("en-US");

/** The length the server checks: characters (code points) once outer whitespace is trimmed. */
export function measure(text) {
  return [...text.trim()].length;
}

/**
 * Ties `counter` (an element) to `input`: hidden while the text is short, then
 * "N of MAX characters", and past the limit how many too many. `problem()` is what to say
 * instead of sending (blank, or too long), or null. `what` names the text ("comment").
 */
export function limitCounter(input, counter, max, what) {
  const update = () => {
    const n = measure(input.value);
    counter.hidden = n < max * NEAR;
    const over = n > max;
    counter.classList.toggle("over", over);
    counter.textContent = over
      ? `${format(n)} of ${format(max)} characters: ${format(n - max)} too many`
      : `${format(n)} of ${format(max)} characters`;
    if (over) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  input.addEventListener("input", update);
  update();
  return {
    update,
    problem() {
      const n = measure(input.value);
      if (n === 0) return `Write something first: a ${what} cannot be blank.`;
      if (n > max) {
        return `Your ${what} is ${format(n - max)} characters too long: ${format(max)} at most. Nothing was sent.`;
      }
      return null;
    },
  };
}
