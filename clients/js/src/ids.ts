/**
 * Message ids are 64-bit integers carried as decimal strings (see frames.ts). Ordering them as
 * numbers without BigInt: a shorter canonical decimal is smaller, equal lengths compare as text.
 */
import type { MessageId } from "./frames.js";

/** Negative if `a` is older than `b`, 0 if equal, positive if newer. */
export function compareIds(a: MessageId, b: MessageId): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The newer of two ids (either may be missing). */
export function maxId(a: MessageId | undefined, b: MessageId | undefined): MessageId | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareIds(a, b) >= 0 ? a : b;
}
