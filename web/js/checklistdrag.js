// Reordering the checklist's rows with the mouse (drag and drop). The keyboard and the ↑ ↓
// buttons do the same moves (checklistpanel.js).

/**
 * Drag and drop on the <ol> `list` of <li class="step" data-item-id> rows (`rowOf(id)`: the
 * row of a step). A drop calls `onDrop(draggedId, targetId, before)`: put the dragged step
 * just before (or after) the target step.
 */
export class DragReorder {
  #list;
  #rowOf;
  #onDrop;
  #dragged = null; // item id being dragged

  constructor(list, { rowOf, onDrop }) {
    this.#list = list;
    this.#rowOf = rowOf;
    this.#onDrop = onDrop;
    list.addEventListener("dragstart", (event) => this.#start(event));
    list.addEventListener("dragover", (event) => this.#over(event));
    list.addEventListener("dragleave", (event) => {
      if (!list.contains(event.relatedTarget)) this.#clearMarks();
    });
    list.addEventListener("drop", (event) => this.#drop(event));
    list.addEventListener("dragend", () => this.#end());
  }

  #start(event) {
    const row = event.target instanceof Element ? event.target.closest("li.step") : null;
    if (!row || row.dataset.editing === "true") {
      event.preventDefault();
      return;
    }
    this.#dragged = row.dataset.itemId;
    row.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", row.querySelector(".step-title").textContent);
  }

  /** Where a drop at this pointer position would put the dragged item: {row, before}. */
  #target(event) {
    const row = event.target instanceof Element ? event.target.closest("li.step") : null;
    if (row && this.#list.contains(row)) {
      const box = row.getBoundingClientRect();
      return { row, before: event.clientY < box.top + box.height / 2 };
    }
    const last = this.#list.lastElementChild;
    return last ? { row: last, before: false } : null;
  }

  #over(event) {
    if (this.#dragged === null) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    const target = this.#target(event);
    this.#clearMarks();
    if (target && target.row.dataset.itemId !== this.#dragged) {
      target.row.classList.add(target.before ? "drop-before" : "drop-after");
    }
  }

  #drop(event) {
    if (this.#dragged === null) return;
    event.preventDefault();
    const dragged = this.#dragged;
    const target = this.#target(event);
    this.#end();
    if (!target || target.row.dataset.itemId === dragged) return;
    this.#onDrop(dragged, target.row.dataset.itemId, target.before);
  }

  #end() {
    if (this.#dragged !== null) this.#rowOf(this.#dragged)?.classList.remove("dragging");
    this.#dragged = null;
    this.#clearMarks();
  }

  #clearMarks() {
    for (const row of this.#list.querySelectorAll(".drop-before, .drop-after")) {
      row.classList.remove("drop-before", "drop-after");
    }
  }
}
