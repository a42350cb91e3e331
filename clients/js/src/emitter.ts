/**
 * A minimal typed event emitter that runs the same in browsers and Node (no `events` module,
 * no DOM `EventTarget`). Event names and listener arguments come from one map type, so
 * `client.on("msg", (msg, source) => ...)` is checked at compile time.
 *
 * A listener that throws must not break the SDK's state machine (a reader loop that dies on an
 * app bug would silently stop delivering messages), so errors are caught and handed to
 * `onListenerError` instead.
 */

export type EventMap = { [event: string]: unknown[] };
export type Listener<A extends unknown[]> = (...args: A) => void;
/** How listeners are stored: the map type is enforced by `on`/`emit`, not by the Set. */
type StoredListener = (...args: unknown[]) => void;

export class TypedEmitter<E extends EventMap> {
  private readonly listeners = new Map<keyof E, Set<StoredListener>>();

  /** Called with what a listener threw; by default `console.error`. */
  onListenerError: (error: unknown, event: keyof E) => void = (error, event) => {
    console.error(`rendezvous: a "${String(event)}" listener threw`, error);
  };

  /** Add a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(listener as unknown as StoredListener);
    return () => this.off(event, listener);
  }

  /** Add a listener that runs at most once. */
  once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    const off = this.on(event, ((...args: E[K]) => {
      off();
      listener(...args);
    }) as Listener<E[K]>);
    return off;
  }

  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.listeners.get(event)?.delete(listener as unknown as StoredListener);
  }

  /** Resolves with the arguments of the next `event` that satisfies `filter`. */
  next<K extends keyof E>(event: K, filter?: (...args: E[K]) => boolean): Promise<E[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, ((...args: E[K]) => {
        if (filter !== undefined && !filter(...args)) return;
        off();
        resolve(args);
      }) as Listener<E[K]>);
    });
  }

  protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }
}
