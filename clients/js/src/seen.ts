/**
 * The message ids already handed to the app, so a message that arrives twice (live and in a
 * `sync`, or resent around a reconnect) is delivered once. Bounded: the oldest ids are
 * forgotten first, which is safe because a duplicate only ever arrives close in time to
 * the original (one sync window).
 */
import type { MessageId } from "./frames.js";

export class SeenIds {
  private readonly ids = new Set<MessageId>();
  constructor(private readonly capacity: number) {}

  /** True the first time `id` is offered, false for a repeat. */
  add(id: MessageId): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      // a Set iterates in insertion order: the first entry is the oldest
      const oldest = this.ids.values().next();
      if (!oldest.done) this.ids.delete(oldest.value);
    }
    return true;
  }

  has(id: MessageId): boolean {
    return this.ids.has(id);
  }
}
