// Small DOM helpers shared by the pages' modules.

/** A new element with an optional class and text (set as textContent, never as HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The page's element with this id. */
export const byId = (id) => document.getElementById(id);
