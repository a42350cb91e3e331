/**
 * Reconnect delays. "Full jitter" (a uniform delay between 0 and the exponential bound) is
 * what keeps a node restart from turning into a thundering herd: a million phones that lost
 * the same node come back spread over the whole window instead of in synchronized waves.
 */

export interface BackoffOptions {
  /** The bound of the first retry, in ms (default 500). */
  baseMs?: number;
  /** The largest bound, in ms (default 30 000). */
  capMs?: number;
  /** A uniform random number in [0, 1); injectable so tests get fixed delays. */
  random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 30_000;
    this.random = options.random ?? Math.random;
  }

  /** The next delay: uniform in [0, min(cap, base * 2^attempt)), `floorMs` at least. */
  next(floorMs = 0): number {
    const bound = Math.min(this.capMs, Math.max(this.baseMs, floorMs) * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.max(0, Math.floor(this.random() * bound));
  }

  /** A delay uniform in [lo, hi), for the protocol's fixed windows (restart: 0.5 to 5 s). */
  between(lo: number, hi: number): number {
    return Math.floor(lo + this.random() * (hi - lo));
  }

  /** After a connection succeeded: the next failure starts from the first bound again. */
  reset(): void {
    this.attempt = 0;
  }
}
