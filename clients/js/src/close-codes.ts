/**
 * What to do after the server closed the socket, straight from the close-code table of
 * docs/protocol.md. Kept as one pure function so the policy can be read (and tested) in one
 * place instead of being spread over the reconnect loop.
 */

export type CloseAction =
  /** Reconnect. `window` picks the delay; `newToken` asks the token provider first. */
  | { kind: "reconnect"; window: "backoff" | "restart" | "slow"; newToken: boolean }
  /** Do not reconnect automatically: the app has to decide (tell the user, sign in again). */
  | { kind: "stop"; why: string };

export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  RESTART: 1012,
  UNAUTHORIZED: 4001,
  TOKEN_EXPIRED: 4002,
  FORBIDDEN: 4003,
  POLICY: 4008,
  TOO_SLOW: 4009,
} as const;

export function closeAction(code: number, reason: string): CloseAction {
  switch (code) {
    case CLOSE.GOING_AWAY:
    case CLOSE.RESTART:
      return { kind: "reconnect", window: "restart", newToken: false };
    case CLOSE.UNAUTHORIZED:
      // "get a new token before reconnecting; don't loop with the old one": the client
      // stops if the provider hands back the token that was just refused
      return { kind: "reconnect", window: "backoff", newToken: true };
    case CLOSE.TOKEN_EXPIRED:
      return { kind: "reconnect", window: "backoff", newToken: true };
    case CLOSE.FORBIDDEN:
      return { kind: "stop", why: "forbidden" };
    case CLOSE.POLICY:
      if (reason.startsWith("max_connections_per_user")) {
        // another device or tab of this user took the slot: fighting it back would evict it
        return { kind: "stop", why: "replaced by another connection of this user" };
      }
      return { kind: "reconnect", window: "slow", newToken: false };
    default:
      // 1006 network loss, 1009, 4009 too slow, anything else: backoff, then sync
      return { kind: "reconnect", window: "backoff", newToken: false };
  }
}
