// Limits shown before they are hit: a counter beside a text field that appears as the text
// nears the server's limit ("3,650 of 4,000 characters") and says by how much a text is over
// it. Nothing is cut: a paste over the limit stays whole, and sending it is refused with the
// length the user can see. Characters are counted as the server counts them (code points).

const SHOW_FROM = 0.8; // the counter appears from this share of the limit

/** The text's length as the server counts it. */
export const charCount = (text) => [...text].length;

const number = (n) => n.toLocaleString("en-US");

/** What the counter says for `length` of `max` ("" while far below it). */
export function countText(length, max) {
  if (length > max) {
    const over = length - max;
    return `${number(length)} of ${number(max)} characters: ${number(over)} too many`;
  }
  if (length < Math.floor(max * SHOW_FROM)) return "";
  return `${number(length)} of ${number(max)} characters`;
}

/** Keep `counter` (an element) up to date with `field`'s length; returns the update function. */
export function attachCounter(field, counter, max) {
  counter.classList.add("counter");
  const update = () => {
    const length = charCount(field.value);
    counter.textContent = countText(length, max);
    counter.dataset.over = String(length > max);
  };
  field.addEventListener("input", update);
  update();
  return update;
}

/** The message for a text over `max` when it is sent. */
export function tooLong(length, max) {
  return `Too long: ${number(length)} characters, at most ${number(max)}. Shorten it by ${number(length - max)}.`;
}
