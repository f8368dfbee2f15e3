//! The PostgreSQL schema, as versioned migrations, and the function that
//! applies one unit of work.
//!
//! Every table lives in the schema named by
//! [`PostgresOptions::schema`](super::PostgresOptions::schema) (default
//! `imkit`), which every connection puts first on its `search_path`.
//! `schema_version` holds how many entries of [`MIGRATIONS`] were applied;
//! [`migrate`] applies the rest at start, each in its own transaction, under
//! an advisory lock so nodes that start together migrate once.
//!
//! **History for size.** `messages` is keyed by `(conversation, seq)` and
//! hash-partitioned by conversation into [`PARTITIONS`] tables, so each
//! partition's index stays a sixteenth of the whole, vacuum works a
//! partition at a time, and every read the engine makes (a page of one
//! conversation, a seq, a tail) is pruned to one partition. Cursors are
//! partitioned the same way. A unique key must hold the partition key, so
//! de-duplication by `(sender, client_msg_id)` lives in its own table,
//! `client_ids`, which points at the stored message.
//!
//! **Seq, race-free across nodes.** `conversations` holds one counter row
//! per conversation (its highest seq and its running unread count). A unit
//! locks that row (`SELECT … FOR UPDATE`) before anything else, so units of
//! one conversation, from any node, run one after another, and the next seq
//! is the row's plus one, written in the same transaction as the message. A
//! rollback takes both back, so seq stays gap-free. (The other way, insert
//! at max+1 under a unique key and retry on conflict, costs a failed
//! statement and a subtransaction per race, which a busy group on several
//! nodes would hit on every message.) Units of a batch are applied sorted
//! by conversation, so two nodes lock counter rows in the same order and do
//! not deadlock.

/// How many hash partitions `messages` and `cursors` have. Fixed when the
/// schema is first created: changing it means rewriting the table, so past
/// what one PostgreSQL serves, distribute by conversation instead (Citus
/// on the same key; see docs/scaling.md).
pub const PARTITIONS: u32 = 16;

/// The schema, one entry per version: entry `i` moves a database from
/// version `i` to `i + 1`. Never edit an entry once released; add one.
/// `{partitions}` is replaced by [`PARTITIONS`].
pub const MIGRATIONS: &[&str] = &[
    // 1: everything durable.
    r#"
CREATE TABLE conversations (
    id             text   PRIMARY KEY,
    max_seq        bigint NOT NULL DEFAULT 0,
    countable_upto bigint NOT NULL DEFAULT 0
);
CREATE TABLE messages (
    conversation   text    NOT NULL,
    seq            bigint  NOT NULL,
    id             uuid    NOT NULL,
    sender         text    NOT NULL,
    sender_device  text    NOT NULL,
    client_msg_id  text    NOT NULL,
    timestamp_ms   bigint  NOT NULL,
    content        bytea   NOT NULL,
    recalled       boolean NOT NULL DEFAULT false,
    countable      boolean NOT NULL,
    countable_upto bigint  NOT NULL,
    PRIMARY KEY (conversation, seq)
) PARTITION BY HASH (conversation);
CREATE INDEX messages_by_id ON messages (id);
CREATE INDEX messages_recalled ON messages (conversation, seq) WHERE recalled AND countable;
CREATE TABLE client_ids (
    sender        text   NOT NULL,
    client_msg_id text   NOT NULL,
    conversation  text   NOT NULL,
    seq           bigint NOT NULL,
    PRIMARY KEY (sender, client_msg_id)
);
CREATE TABLE cursors (
    conversation text   NOT NULL,
    "user"       text   NOT NULL,
    device       text   NOT NULL, -- '' for the user's read cursor
    seq          bigint NOT NULL,
    PRIMARY KEY (conversation, "user", device)
) PARTITION BY HASH (conversation);
CREATE TABLE user_conversations (
    "user"       text NOT NULL,
    conversation text NOT NULL,
    PRIMARY KEY ("user", conversation)
);
DO $$
BEGIN
    FOR i IN 0..{partitions} - 1 LOOP
        EXECUTE format('CREATE TABLE messages_%s PARTITION OF messages FOR VALUES WITH (MODULUS {partitions}, REMAINDER %s)', i, i);
        EXECUTE format('CREATE TABLE cursors_%s PARTITION OF cursors FOR VALUES WITH (MODULUS {partitions}, REMAINDER %s)', i, i);
    END LOOP;
END
$$;
CREATE TABLE devices (
    "user"        text   NOT NULL,
    device        text   NOT NULL,
    first_seen_ms bigint NOT NULL,
    PRIMARY KEY ("user", device)
);
CREATE TABLE groups (
    id         text   PRIMARY KEY,
    name       text   NOT NULL,
    avatar     text   NOT NULL,
    owner      text   NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE group_members (
    group_id  text      NOT NULL,
    "user"    text      NOT NULL,
    role      text      NOT NULL,
    joined_ms bigint    NOT NULL,
    position  bigserial NOT NULL,
    PRIMARY KEY (group_id, "user")
);
CREATE INDEX group_members_by_user ON group_members ("user");
CREATE TABLE friends (
    "user" text NOT NULL,
    other  text NOT NULL,
    PRIMARY KEY ("user", other)
);
CREATE TABLE friend_requests (
    from_user text NOT NULL,
    to_user   text NOT NULL,
    PRIMARY KEY (from_user, to_user)
);
CREATE INDEX friend_requests_to ON friend_requests (to_user);
CREATE TABLE blocks (
    "user" text NOT NULL,
    other  text NOT NULL,
    PRIMARY KEY ("user", other)
);
CREATE TABLE privacy (
    "user"       text    PRIMARY KEY,
    friends_only boolean NOT NULL
);
CREATE TABLE accounts (
    "user"     text    PRIMARY KEY,
    name       text    NOT NULL,
    disabled   boolean NOT NULL,
    created_ms bigint  NOT NULL
);
CREATE TABLE revoked_tokens (
    token_id   text   PRIMARY KEY,
    expires_at bigint NOT NULL
);

-- One unit of work (see store/unit.rs), applied inside the caller's
-- transaction. Refusals are answered, not raised, and are found before
-- the first write, so a refused unit leaves the batch's transaction clean:
--   status 0: applied; 1: a resend (the original's columns are returned,
--   nothing written); 2: a recall's target does not exist.
-- Moves: kinds 0 = to p_targets[i] (clamped to the highest seq),
-- 1 = to the appended seq, 2 = to the seq before it.
CREATE FUNCTION apply_unit(
    p_conv text,
    p_id uuid, p_sender text, p_device text, p_cmid text, p_ts bigint,
    p_content bytea, p_countable boolean, p_recall bigint,
    p_list text[],
    p_users text[], p_devices text[], p_kinds smallint[], p_targets bigint[],
    OUT status smallint, OUT o_conv text, OUT o_seq bigint, OUT o_id uuid,
    OUT o_device text, OUT o_ts bigint, OUT o_content bytea, OUT o_recalled boolean,
    OUT befores bigint[], OUT afters bigint[])
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    v_max bigint := 0;
    v_cnt bigint := 0;
    v_seq bigint := 0;
    v_target bigint;
    v_cur bigint;
    v_had boolean;
BEGIN
    status := 0;
    befores := '{}';
    afters := '{}';
    IF p_id IS NOT NULL THEN
        INSERT INTO conversations (id) VALUES (p_conv) ON CONFLICT (id) DO NOTHING;
    END IF;
    -- Every unit of this conversation, from any node, waits here.
    SELECT c.max_seq, c.countable_upto INTO v_max, v_cnt
        FROM conversations c WHERE c.id = p_conv FOR UPDATE;
    IF NOT FOUND THEN
        v_max := 0;
        v_cnt := 0;
    END IF;
    IF p_id IS NOT NULL THEN
        IF p_recall IS NOT NULL AND (p_recall < 1 OR p_recall > v_max) THEN
            status := 2;
            RETURN;
        END IF;
        INSERT INTO client_ids (sender, client_msg_id, conversation, seq)
            VALUES (p_sender, p_cmid, p_conv, v_max + 1)
            ON CONFLICT (sender, client_msg_id) DO NOTHING;
        IF NOT FOUND THEN
            status := 1;
            SELECT m.conversation, m.seq, m.id, m.sender_device, m.timestamp_ms, m.content, m.recalled
                INTO o_conv, o_seq, o_id, o_device, o_ts, o_content, o_recalled
                FROM client_ids k JOIN messages m
                    ON m.conversation = k.conversation AND m.seq = k.seq
                WHERE k.sender = p_sender AND k.client_msg_id = p_cmid;
            RETURN;
        END IF;
        v_seq := v_max + 1;
        v_max := v_seq;
        IF p_countable THEN
            v_cnt := v_cnt + 1;
        END IF;
        INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id,
                              timestamp_ms, content, countable, countable_upto)
            VALUES (p_conv, v_seq, p_id, p_sender, p_device, p_cmid, p_ts, p_content,
                    p_countable, v_cnt);
        UPDATE conversations SET max_seq = v_max, countable_upto = v_cnt WHERE id = p_conv;
        IF p_recall IS NOT NULL THEN
            UPDATE messages SET recalled = true, content = '\x'::bytea
                WHERE conversation = p_conv AND seq = p_recall;
        END IF;
        o_conv := p_conv;
        o_seq := v_seq;
    END IF;
    IF cardinality(p_list) > 0 THEN
        INSERT INTO user_conversations ("user", conversation)
            SELECT u, p_conv FROM unnest(p_list) AS u
            ON CONFLICT DO NOTHING;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_users), 0) LOOP
        v_target := CASE p_kinds[i]
            WHEN 0 THEN LEAST(p_targets[i], v_max)
            WHEN 1 THEN v_seq
            ELSE GREATEST(v_seq - 1, 0)
        END;
        SELECT c.seq INTO v_cur FROM cursors c
            WHERE c.conversation = p_conv AND c."user" = p_users[i] AND c.device = p_devices[i]
            FOR UPDATE;
        v_had := FOUND;
        IF NOT v_had THEN
            v_cur := 0;
        END IF;
        IF v_target > v_cur THEN
            IF v_had THEN
                UPDATE cursors SET seq = v_target
                    WHERE conversation = p_conv AND "user" = p_users[i] AND device = p_devices[i];
            ELSE
                INSERT INTO cursors (conversation, "user", device, seq)
                    VALUES (p_conv, p_users[i], p_devices[i], v_target)
                    ON CONFLICT (conversation, "user", device)
                    DO UPDATE SET seq = GREATEST(cursors.seq, excluded.seq);
            END IF;
            befores := befores || v_cur;
            afters := afters || v_target;
        ELSE
            befores := befores || v_cur;
            afters := afters || v_cur;
        END IF;
    END LOOP;
END
$fn$;
"#,
    // 2: the event journal (store::journal), written in the transaction of
    // the units it reports; inserts take JOURNAL_LOCK so ids grow in
    // commit order across nodes. The lease names the node that reads it.
    r#"
CREATE TABLE journal (
    id      bigserial PRIMARY KEY,
    key     text      NOT NULL,
    seq     bigint    NOT NULL,
    payload bytea     NOT NULL
);
CREATE TABLE journal_lease (
    name   text        PRIMARY KEY,
    holder text        NOT NULL,
    until  timestamptz NOT NULL
);
"#,
    // 3: push tokens, one per device, and notification preferences.
    r#"
CREATE TABLE push_tokens (
    "user"   text NOT NULL,
    device   text NOT NULL,
    provider text NOT NULL,
    platform text NOT NULL,
    token    text NOT NULL,
    PRIMARY KEY ("user", device)
);
CREATE TABLE push_prefs (
    "user"       text    PRIMARY KEY,
    hide_content boolean NOT NULL
);
"#,
];

/// Takes the transaction-level advisory lock every journal insert takes
/// (one per schema): held from the insert to the commit, it makes ids grow
/// in commit order, so a reader walking ids upwards never passes a record
/// that commits later.
pub const JOURNAL_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('imkit journal ' || current_schema()))";

/// Applies the migrations `schema` lacks, each in a transaction, under an
/// advisory lock so concurrent starts migrate once. Refuses a database
/// newer than this build.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> crate::Result<()> {
    use super::pg_err;
    let quoted = quote_ident(schema);
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('imkit migrate ' || $1))",
        &[&schema],
    )
    .await
    .map_err(pg_err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         SET LOCAL search_path TO {quoted};
         CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);
         INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);"
    ))
    .await
    .map_err(pg_err)?;
    let version: i32 = tx
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    let known = MIGRATIONS.len();
    let at = usize::try_from(version).unwrap_or(usize::MAX);
    if at > known {
        return Err(crate::Error::store(
            super::BACKEND,
            format!("schema {schema} is at version {version}, newer than this build ({known})"),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(at) {
        let sql = sql.replace("{partitions}", &PARTITIONS.to_string());
        tx.batch_execute(&sql).await.map_err(|e| {
            crate::Error::store(
                super::BACKEND,
                format!("migration {}: {}", i + 1, error_text(&e)),
            )
        })?;
        let next = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE schema_version SET version = $1", &[&next])
            .await
            .map_err(pg_err)?;
        tracing::info!(schema, version = next, "postgres schema migrated");
    }
    tx.commit().await.map_err(pg_err)
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's message for an error, where it sent one.
pub(super) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
