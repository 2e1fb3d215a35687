// Which chat actions the reader may take on a message: the server's rules (docs/protocol.md,
// chat.send / chat.edit / chat.delete and "Archived rooms"), mirrored so that the page never
// offers a control the server would refuse (as checklist.js mayDo does for the roadmap).
//
//   reply   any member, on a message that is still there (the server takes a reply to a
//           deleted one too; the page does not offer it)
//   edit    the message's author only (and within MENTEO_EDIT_WINDOW of sending it: the page
//           cannot know the window, so a refusal for age takes the control away afterwards)
//   delete  the message's author, or a service token's socket
// An archived room takes none of them, nor new messages; a system message (the platform's)
// is never edited or deleted here.

/** Most characters a message body may have (code points), as the server counts them. */
export const MAX_BODY = 4000;

/**
 * @param {{user_id: string, role?: string} | null} me who I am (the welcome's `you`)
 * @param {"send" | "reply" | "edit" | "delete"} action
 * @param {object | null} message the chat.message frame as it is now (null for "send")
 * @param {{archived?: boolean}} room
 */
export function mayChat(me, action, message, { archived = false } = {}) {
  if (me === null || archived) return false;
  if (action === "send") return true;
  if (message === null || typeof message.seq !== "number" || message.deleted) return false;
  if (action === "reply") return true;
  const system = message.kind === "system";
  const mine = message.author?.user_id === me.user_id;
  if (action === "edit") return mine && !system;
  if (action === "delete") return (mine && !system) || me.role === "service";
  return false;
}

/** What is wrong with a message body before it is sent, or "" (the server's rules). */
export function bodyProblem(body) {
  if (body.trim() === "") return "Write something first: a message cannot be blank.";
  const length = [...body].length;
  if (length > MAX_BODY) return `Too long: ${length} characters, at most ${MAX_BODY}.`;
  return "";
}
