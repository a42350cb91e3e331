"""The Cassandra layout and the blocking start-up around it: connect, migrate, prepare.

The tables, version by version, are in `storage.cassandra_tables` (messages by match and
time bucket newest first, the buckets each match used, the idempotency keys of sends, each
user's conversations, matches and devices, and what later versions added). `CQL` holds
every statement the store sends; the write timestamps and page cursors below are part of
the stored layout too.

Everything here blocks and runs before the first request: `CassandraStore.start` calls it on
an executor thread, and a one-off `rendezvous migrate` can call `connect` and `migrate` before
a rolling deploy (DDL from many nodes at once is best avoided: it is the one moment schema
versions can disagree). `migrate` creates or upgrades the keyspace and is safe to rerun.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import dict_factory

from protocol.ids import TIME_SHIFT, ms_of
from storage.base import SETTING_COLUMNS, MatchRecord, Message
from storage.cassandra_tables import COMPONENT, MIGRATIONS, SCHEMA_VERSION

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# A statement of `migrate` waits this long: DDL waits for schema agreement, which takes
# seconds on a busy node, and every one is idempotent, so waiting beats failing the start
DDL_TIMEOUT_S = 60.0

_MSG = "match_id, id, sender, client_id, ts, body, media"
_MATCH = "id, user_a, user_b, ts, superlike, closed_ts, closed_by"
_REPORT = "id, reporter, reported, reason, note, ts, evidence"
CURSOR_COLUMNS = {"read": "read_id", "delivered": "delivered_id"}
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")

_ADD_COLUMN = re.compile(r"ALTER TABLE \{ks\}\.(\w+) ADD (\w+) ")


# Every statement `CassandraStore` sends, prepared at start; {ks} is the keyspace. Each
# reads one partition (one table per query), so token-aware routing sends it to a replica.
CQL: dict[str, str] = {
    "ping": "SELECT release_version FROM system.local",
    "insert_message": f"INSERT INTO {{ks}}.messages (bucket, {_MSG}) VALUES (?, ?, ?, ?, ?, ?,"
                      " ?, ?)",
    "get_message": f"SELECT {_MSG} FROM {{ks}}.messages WHERE match_id = ? AND bucket = ?"
                   " AND id = ?",
    "history": f"SELECT {_MSG} FROM {{ks}}.messages WHERE match_id = ? AND bucket = ?"
               " AND id < ? LIMIT ?",
    "after": f"SELECT {_MSG} FROM {{ks}}.messages WHERE match_id = ? AND bucket = ?"
             " AND id > ? AND id <= ? ORDER BY id ASC LIMIT ?",
    "senders_after": "SELECT id, sender FROM {ks}.messages WHERE match_id = ? AND bucket = ?"
                     " AND id > ? AND id <= ? ORDER BY id ASC LIMIT ?",
    "add_bucket": "INSERT INTO {ks}.match_buckets (match_id, bucket) VALUES (?, ?)",
    "buckets_down": "SELECT bucket FROM {ks}.match_buckets WHERE match_id = ? AND bucket <= ?",
    "buckets_up": "SELECT bucket FROM {ks}.match_buckets WHERE match_id = ? AND bucket >= ?"
                  " ORDER BY bucket ASC",
    "buckets_between": "SELECT bucket FROM {ks}.match_buckets WHERE match_id = ?"
                       " AND bucket >= ? AND bucket <= ? ORDER BY bucket ASC",
    "get_client_id": "SELECT id, ts FROM {ks}.message_client_ids WHERE match_id = ?"
                     " AND sender = ? AND client_id = ?",
    "put_client_id": "INSERT INTO {ks}.message_client_ids (match_id, sender, client_id, id, ts)"
                     " VALUES (?, ?, ?, ?, ?)",
    "advance_conversation": "UPDATE {ks}.conversations_by_user USING TIMESTAMP ? SET last = ?"
                            " WHERE user = ? AND match_id = ?",
    "add_conversation": "INSERT INTO {ks}.conversations_by_user (user, match_id, peer,"
                        " match_ts) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "hide_conversation": "DELETE FROM {ks}.conversations_by_user USING TIMESTAMP ?"
                         " WHERE user = ? AND match_id = ?",
    "conversations": "SELECT match_id, peer, match_ts, last FROM {ks}.conversations_by_user"
                     " WHERE user = ?",
    "cursors": "SELECT user, read_id, delivered_id FROM {ks}.read_cursors WHERE match_id = ?",
    "cursor": "SELECT read_id, delivered_id FROM {ks}.read_cursors WHERE match_id = ?"
              " AND user = ?",
    **{f"advance_{kind}": f"UPDATE {{ks}}.read_cursors USING TIMESTAMP ? SET {col} = ?"
                          " WHERE match_id = ? AND user = ?"
       for kind, col in CURSOR_COLUMNS.items()},
    "put_swipe": "INSERT INTO {ks}.swipes_by_swiper (swiper, target, action, ts)"
                 " VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "get_swipe": "SELECT action FROM {ks}.swipes_by_swiper WHERE swiper = ? AND target = ?",
    "swipes_first": "SELECT target, action, ts FROM {ks}.swipes_by_swiper WHERE swiper = ?"
                    " LIMIT ?",
    "swipes_next": "SELECT target, action, ts FROM {ks}.swipes_by_swiper WHERE swiper = ?"
                   " AND target > ? LIMIT ?",
    "put_like": "INSERT INTO {ks}.likes_received (target, swiper, action, ts)"
                " VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "drop_like": "DELETE FROM {ks}.likes_received USING TIMESTAMP ? WHERE target = ?"
                 " AND swiper = ?",
    "insert_match": f"INSERT INTO {{ks}}.matches ({_MATCH}, creator) VALUES (?, ?, ?, ?, ?, ?,"
                    " ?, ?) IF NOT EXISTS",
    "get_match": f"SELECT {_MATCH} FROM {{ks}}.matches WHERE id = ?",
    "get_match_serial": f"SELECT {_MATCH}, creator FROM {{ks}}.matches WHERE id = ?",
    "close_match": "UPDATE {ks}.matches SET closed_ts = ?, closed_by = ? WHERE id = ?",
    "list_match": "INSERT INTO {ks}.matches_by_user (user, ts, match_id, peer, superlike)"
                  " VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "unlist_match": "DELETE FROM {ks}.matches_by_user USING TIMESTAMP ? WHERE user = ?"
                    " AND ts = ? AND match_id = ?",
    "matches_first": "SELECT match_id, ts, peer, superlike FROM {ks}.matches_by_user"
                     " WHERE user = ? LIMIT ?",
    "matches_next": "SELECT match_id, ts, peer, superlike FROM {ks}.matches_by_user"
                    " WHERE user = ? AND (ts, match_id) < (?, ?) LIMIT ?",
    "remember_match": "INSERT INTO {ks}.user_matches (user, ts, match_id) VALUES (?, ?, ?)",
    "matches_ever": "SELECT match_id FROM {ks}.user_matches WHERE user = ?",
    "add_block": "INSERT INTO {ks}.blocks (user, target, ts) VALUES (?, ?, ?)",
    "get_block": "SELECT ts FROM {ks}.blocks WHERE user = ? AND target = ?",
    "blocks_made": "SELECT target, ts FROM {ks}.blocks WHERE user = ?",
    "get_owner": 'SELECT user FROM {ks}.device_owner WHERE "token" = ?',
    "put_owner": 'INSERT INTO {ks}.device_owner ("token", user) VALUES (?, ?)',
    "drop_owner": 'DELETE FROM {ks}.device_owner WHERE "token" = ?',
    "get_device": 'SELECT app, locale FROM {ks}.devices_by_user WHERE user = ? AND "token" = ?',
    "put_device": 'INSERT INTO {ks}.devices_by_user (user, "token", platform, app, locale,'
                  " updated_ts) VALUES (?, ?, ?, ?, ?, ?)",
    "drop_device": 'DELETE FROM {ks}.devices_by_user WHERE user = ? AND "token" = ?',
    "devices": 'SELECT user, "token", platform, app, locale, updated_ts FROM {ks}.devices_by_user'
               " WHERE user = ?",
    "get_settings": f"SELECT {', '.join(SETTING_COLUMNS)} FROM {{ks}}.settings"
                    " WHERE user = ?",
    "put_settings": "UPDATE {ks}.settings SET "
                    + ", ".join(f"{col} = ?" for col in SETTING_COLUMNS) + " WHERE user = ?",
    "tombstone_message": "DELETE body, media FROM {ks}.messages WHERE match_id = ?"
                         " AND bucket = ? AND id = ?",
    "put_mute": "INSERT INTO {ks}.mutes (user, match_id, until_ms) VALUES (?, ?, ?)",
    "delete_mute": "DELETE FROM {ks}.mutes WHERE user = ? AND match_id = ?",
    "mute_until": "SELECT until_ms FROM {ks}.mutes WHERE user = ? AND match_id = ?",
    "mutes": "SELECT match_id, until_ms FROM {ks}.mutes WHERE user = ?",
    # -- the swipe economy (storage/cassandra_swipes.py) --
    "put_last_swipe": "INSERT INTO {ks}.last_swipes (swiper, target, action, ts)"
                      " VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "get_last_swipe": "SELECT target, action, ts FROM {ks}.last_swipes WHERE swiper = ?",
    "drop_last_swipe": "DELETE FROM {ks}.last_swipes USING TIMESTAMP ? WHERE swiper = ?",
    "get_swipe_row": "SELECT action, ts FROM {ks}.swipes_by_swiper WHERE swiper = ?"
                     " AND target = ?",
    "drop_swipe": "DELETE FROM {ks}.swipes_by_swiper USING TIMESTAMP ? WHERE swiper = ?"
                  " AND target = ?",
    "put_timed_like": "INSERT INTO {ks}.likes_by_time (target, ts, swiper, action)"
                      " VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "drop_timed_like": "DELETE FROM {ks}.likes_by_time WHERE target = ? AND ts = ?"
                       " AND swiper = ?",
    "likes_first": "SELECT ts, swiper FROM {ks}.likes_by_time WHERE target = ? LIMIT ?",
    "likes_next": "SELECT ts, swiper FROM {ks}.likes_by_time WHERE target = ?"
                  " AND (ts, swiper) < (?, ?) LIMIT ?",
    "likes_standing": "SELECT swiper, action, ts FROM {ks}.likes_received WHERE target = ?"
                      " AND swiper IN ?",
    "add_block_received": "INSERT INTO {ks}.blocks_received (target, user, ts)"
                          " VALUES (?, ?, ?)",
    "deck_swiped": "SELECT target FROM {ks}.swipes_by_swiper WHERE swiper = ?"
                   " AND target IN ?",
    "deck_blocked": "SELECT target FROM {ks}.blocks WHERE user = ? AND target IN ?",
    "deck_blocked_by": "SELECT user FROM {ks}.blocks_received WHERE target = ?"
                       " AND user IN ?",
    "revoke_tokens": "UPDATE {ks}.token_revocations USING TIMESTAMP ? SET not_before = ?"
                     " WHERE user = ?",
    "tokens_not_before": "SELECT not_before FROM {ks}.token_revocations WHERE user = ?",
    "put_received": "INSERT INTO {ks}.swipes_received (target, swiper, ts) VALUES (?, ?, ?)"
                    " USING TIMESTAMP ?",
    # -- account erasure (storage/cassandra_erasure.py) -----------------------------------
    "begin_erasure": "INSERT INTO {ks}.erasures (user, erased_at, step) VALUES (?, ?, 0)"
                     " IF NOT EXISTS",
    "restart_erasure": "UPDATE {ks}.erasures SET erased_at = ?, step = 0, done_ts = null"
                       " WHERE user = ? IF erased_at = ?",
    "get_erasure": "SELECT user, erased_at, step, done_ts FROM {ks}.erasures WHERE user = ?",
    "erasure_progress": "UPDATE {ks}.erasures SET step = ? WHERE user = ?",
    "finish_erasure": "UPDATE {ks}.erasures SET done_ts = ? WHERE user = ?",
    "add_pending_erasure": "INSERT INTO {ks}.erasures_pending (shard, user, erased_at)"
                           " VALUES (0, ?, ?)",
    "drop_pending_erasure": "DELETE FROM {ks}.erasures_pending WHERE shard = 0 AND user = ?",
    "pending_erasures": "SELECT user, erased_at FROM {ks}.erasures_pending WHERE shard = 0"
                        " LIMIT ?",
    "sent_page": "SELECT id, sender, client_id FROM {ks}.messages WHERE match_id = ?"
                 " AND bucket = ? AND id < ? LIMIT ?",
    "tombstone": "DELETE body, media, client_id FROM {ks}.messages WHERE match_id = ?"
                 " AND bucket = ? AND id = ?",
    "drop_client_id": "DELETE FROM {ks}.message_client_ids WHERE match_id = ? AND sender = ?"
                      " AND client_id = ?",
    "drop_cursor": "DELETE FROM {ks}.read_cursors WHERE match_id = ? AND user = ?",
    "drop_conversation": "DELETE FROM {ks}.conversations_by_user WHERE user = ?"
                         " AND match_id = ?",
    "forget_user_match": "DELETE FROM {ks}.user_matches WHERE user = ? AND ts = ?"
                         " AND match_id = ?",
    "swipes_given": "SELECT target FROM {ks}.swipes_by_swiper WHERE swiper = ?",
    "swipes_taken": "SELECT swiper FROM {ks}.swipes_received WHERE target = ?",
    "erase_swipe": "DELETE FROM {ks}.swipes_by_swiper WHERE swiper = ? AND target = ?",
    "erase_like": "DELETE FROM {ks}.likes_received WHERE target = ? AND swiper = ?",
    "erase_received": "DELETE FROM {ks}.swipes_received WHERE target = ? AND swiper = ?",
    **{f"erase_{table}": f"DELETE FROM {{ks}}.{table} WHERE {column} = ?"
       for table, column in (("swipes_by_swiper", "swiper"), ("likes_received", "target"),
                             ("swipes_received", "target"), ("blocks", "user"),
                             ("devices_by_user", "user"), ("settings", "user"),
                             ("conversations_by_user", "user"), ("matches_by_user", "user"),
                             ("user_matches", "user"), ("likes_by_time", "target"),
                             ("last_swipes", "swiper"), ("mutes", "user"))},
    "likes_by_time_of": "SELECT ts, swiper FROM {ks}.likes_by_time WHERE target = ?",
    "blocks_of": "SELECT target FROM {ks}.blocks WHERE user = ?",
    "erase_block_received": "DELETE FROM {ks}.blocks_received WHERE target = ? AND user = ?",
    # -- reports (storage/cassandra_reports.py) --
    "put_report": f"INSERT INTO {{ks}}.reports ({_REPORT}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                  " USING TTL ?",
    "get_report": f"SELECT {_REPORT} FROM {{ks}}.reports WHERE id = ?",
    "drop_report": "DELETE FROM {ks}.reports WHERE id = ?",
    "list_report": "INSERT INTO {ks}.reports_by_day (day, ts, id) VALUES (?, ?, ?) USING TTL ?",
    "reports_in_day": "SELECT ts, id FROM {ks}.reports_by_day WHERE day = ? LIMIT ?",
    "reports_in_day_after": "SELECT ts, id FROM {ks}.reports_by_day WHERE day = ?"
                            " AND (ts, id) < (?, ?) LIMIT ?",
    "reports_in_day_before": "SELECT ts, id FROM {ks}.reports_by_day WHERE day = ? AND ts < ?",
    "unlist_reports": "DELETE FROM {ks}.reports_by_day WHERE day = ? AND ts < ?",
    "add_report_day": "INSERT INTO {ks}.report_days (shard, day) VALUES (0, ?) USING TTL ?",
    "report_days_from": "SELECT day FROM {ks}.report_days WHERE shard = 0 AND day <= ?"
                        " AND day >= ?",
    "report_days_through": "SELECT day FROM {ks}.report_days WHERE shard = 0 AND day <= ?",
    "drop_report_day": "DELETE FROM {ks}.report_days WHERE shard = 0 AND day = ?",
}


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How to reach the cluster and how sure each request must be."""

    contact_points: tuple[tuple[str, int], ...]
    consistency: int = ConsistencyLevel.LOCAL_QUORUM
    serial_consistency: int = ConsistencyLevel.LOCAL_SERIAL
    request_timeout_s: float = 5.0
    local_dc: str | None = None
    protocol_version: int = ProtocolVersion.V5  # Cassandra 4.0 and later; no downgrade dance


def connect(settings: ClusterSettings) -> tuple[Any, Any]:
    """A connected (cluster, session). Blocking.

    Token-aware routing inside the local data centre; rows as dicts; a reconnection that
    retries from 0.5 s up to every 4 s, so a restarted node is used again within seconds.
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(settings.local_dc)),
        consistency_level=settings.consistency,
        serial_consistency_level=settings.serial_consistency,
        request_timeout=settings.request_timeout_s, row_factory=dict_factory)
    cluster = Cluster(list(settings.contact_points),
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      reconnection_policy=ExponentialReconnectionPolicy(0.5, 4.0),
                      connect_timeout=settings.request_timeout_s,
                      control_connection_timeout=settings.request_timeout_s,
                      protocol_version=settings.protocol_version)
    try:
        return cluster, cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise


def prepare(session: Any, keyspace: str, settings: ClusterSettings) -> dict[str, Any]:
    """Every statement of `CQL`, prepared for `keyspace`. Blocking."""
    ks = check_identifier(keyspace)
    prepared = {name: session.prepare(cql.format(ks=ks)) for name, cql in CQL.items()}
    prepared["ping"].consistency_level = ConsistencyLevel.ONE  # system.local is per node
    prepared["get_match_serial"].consistency_level = settings.serial_consistency
    return prepared


def consistency_level(name: str) -> int:
    try:
        return cast(int, ConsistencyLevel.name_to_value[name.upper()])
    except KeyError:
        raise ValueError(f"unknown consistency level {name!r}") from None


def host_port(point: str, default_port: int) -> tuple[str, int]:
    """'host', 'host:port', '[v6]' or '[v6]:port' (a bare IPv6 address takes the default)."""
    port = str(default_port)
    if point.startswith("["):
        host, _, rest = point[1:].partition("]")
        if rest:
            port = rest[1:] if rest.startswith(":") else ""
    elif point.count(":") == 1:
        host, port = point.split(":")
    else:
        host = point
    if not host or not port.isdigit():
        raise ValueError(f"bad Cassandra contact point {point!r}")
    return host, int(port)


class SchemaTooNew(Exception):
    """The keyspace was migrated by a newer version of the code; refuse rather than guess."""


def check_identifier(name: str) -> str:
    """`name` if it is a plain CQL identifier (it is pasted into statements unquoted)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid keyspace name: {name!r}")
    return name


def replication_cql(replication: Mapping[str, Any]) -> str:
    """The CQL map literal of a replication setting: every value quoted, as CQL wants."""
    if "class" not in replication:
        raise ValueError("replication needs a 'class' (SimpleStrategy or NetworkTopologyStrategy)")
    items = []
    for key, value in replication.items():
        for part in (str(key), str(value)):
            if "'" in part:
                raise ValueError(f"quote in replication setting: {part!r}")
        items.append(f"'{key}': '{value}'")
    return "{" + ", ".join(items) + "}"


def migrate(session: Any, keyspace: str, replication: Mapping[str, Any]) -> int:
    """Create the keyspace and tables, or bring an older schema up to `SCHEMA_VERSION`.

    Blocking (DDL waits for schema agreement): run it at start-up in an executor or from the
    CLI. Returns the version now stored. An existing keyspace keeps its replication; change
    that with ALTER KEYSPACE and a repair, never here.
    """
    ks = check_identifier(keyspace)
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                    f"{replication_cql(replication)}", timeout=DDL_TIMEOUT_S)
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.schema_version ("
                    " component text PRIMARY KEY, version int, updated_ts timestamp)",
                    timeout=DDL_TIMEOUT_S)
    current = stored_version(session, ks)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"keyspace {ks} is at schema version {current}, newer than this "
                           f"code's {SCHEMA_VERSION}")
    for version in sorted(v for v in MIGRATIONS if v > current):
        for statement in MIGRATIONS[version]:
            if not _column_exists(session, ks, statement):
                session.execute(statement.format(ks=ks), timeout=DDL_TIMEOUT_S)
        if version == 2 and current >= 1:
            _fill_user_matches(session, ks)
        if version == 3 and current >= 1:
            _fill_swipes_received(session, ks)
        session.execute(f"INSERT INTO {ks}.schema_version (component, version, updated_ts)"
                        " VALUES (%s, %s, toTimestamp(now()))", (COMPONENT, version))
        current = version
    return current


def _column_exists(session: Any, ks: str, statement: str) -> bool:
    """True for an `ALTER TABLE ... ADD` whose column is there already (Cassandra has no
    ADD IF NOT EXISTS for columns): one read of the table's schema partition."""
    added = _ADD_COLUMN.match(statement)
    if added is None:
        return False
    table, column = added.groups()
    rows = session.execute("SELECT column_name FROM system_schema.columns WHERE"
                           " keyspace_name = %s AND table_name = %s", (ks.lower(), table))
    names = {r["column_name"] if isinstance(r, dict) else r[0] for r in rows}
    return column in names


def _fill_user_matches(session: Any, ks: str) -> None:
    """Index the matches a version-1 keyspace already holds. The one full read of a table
    this code makes, once, at the upgrade; paged by the driver, idempotent if cut short."""
    insert = session.prepare(CQL["remember_match"].format(ks=ks))
    for row in session.execute(f"SELECT id, user_a, user_b, ts FROM {ks}.matches"):
        r = row if isinstance(row, dict) else row._asdict()
        for user in (r["user_a"], r["user_b"]):
            session.execute(insert, (user, r["ts"], r["id"]))


def _fill_swipes_received(session: Any, ks: str) -> None:
    """Index the swipes a version-1 keyspace already holds by target, as `_fill_user_matches`
    does the matches: once, at the upgrade, paged by the driver, idempotent if cut short."""
    insert = session.prepare(CQL["put_received"].format(ks=ks))
    for row in session.execute(f"SELECT swiper, target, ts FROM {ks}.swipes_by_swiper"):
        r = row if isinstance(row, dict) else row._asdict()
        session.execute(insert, (r["target"], r["swiper"], r["ts"], r["ts"] * 1000))


def stored_version(session: Any, keyspace: str) -> int:
    """The schema version recorded in `keyspace` (0 for a keyspace never migrated)."""
    ks = check_identifier(keyspace)
    rows = list(session.execute(f"SELECT version FROM {ks}.schema_version"
                                " WHERE component = %s", (COMPONENT,)))
    if not rows:
        return 0
    row = rows[0]
    value = row["version"] if isinstance(row, dict) else row[0]
    return int(value or 0)


# -- keys, cursors and write timestamps: part of the stored layout ------------------------
LOW_BITS = (1 << TIME_SHIFT) - 1  # the node and sequence bits of a message id


def id_stamp(message_id: int) -> int:
    """A write timestamp (us) that never decreases as message ids grow: the id's ms, and
    its node and sequence bits scaled into the sub-ms digits. Equal stamps fall to the
    larger value, so writes of larger ids still win."""
    return ms_of(message_id) * 1000 + ((message_id & LOW_BITS) * 1000 >> TIME_SHIFT)


def message_of(r: dict[str, Any]) -> Message:
    media = r["media"]
    return Message(r["match_id"], r["id"], r["sender"], r["client_id"] or "", r["ts"], r["body"],
                   None if media is None else json.loads(media))


def match_of(r: dict[str, Any]) -> MatchRecord:
    return MatchRecord(r["id"], (r["user_a"], r["user_b"]), r["ts"], bool(r["superlike"]),
                       r["closed_ts"], r["closed_by"])




class Lru(Generic[K, V]):
    """A bounded map that forgets the least recently used entry."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


class SubMsStamps:
    """Write timestamps (us) for events stamped in ms: within one ms, a later call here
    gets a later microsecond (up to 1000 per ms), so it wins a tie on the ms."""

    def __init__(self) -> None:
        self._used: Lru[int, int] = Lru(4096)

    def at(self, ms: int) -> int:
        used = self._used.get(ms)
        sub = 0 if used is None else min(used + 1, 999)
        self._used.put(ms, sub)
        return ms * 1000 + sub
