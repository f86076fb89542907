-- The message path's group-commit batch (src/store/postgres.rs,
-- PgBatchWriter) as ONE statement, so ONE round trip: called outside an
-- explicit transaction, the call is its own transaction. It replaces seven
-- round trips (BEGIN, lock, latest seqs, insert, delete, cancel, COMMIT),
-- each of which waited for a server process to be scheduled.
--
-- Same semantics as those separate statements: in READ COMMITTED a
-- VOLATILE function takes a fresh snapshot for each statement it runs, so
-- the latest-seq read sees every message committed by whoever held the
-- recipients' locks before us.
--
-- Every statement here is a keyed lookup, which only an index serves at
-- any size. But while a table looks tiny (a fresh deployment) the planner
-- prefers sequential scans, and PL/pgSQL keeps a plan for the life of the
-- connection: the latest-seq scan then walked every dead (acknowledged)
-- row of `messages`, for every recipient of every batch. Hence
-- enable_seqscan = off for this function only; and generic plans, made
-- once per connection, since the best plan does not depend on the
-- arguments (re-planning on every call cost 12 % of PostgreSQL's CPU).
--
-- Rows returned: ('latest', recipient, NULL, seq or NULL) per recipient,
-- before the inserts; ('stored', recipient, id, seq) per stored message
-- (a message whose recipient does not exist is left out); ('deleted',
-- recipient, id, NULL) per acknowledged message that was deleted.
CREATE FUNCTION write_message_batch(
    recipients  UUID[],  -- distinct recipients of the enqueues, in id order
    m_id        UUID[],
    m_recipient UUID[],
    m_sender    UUID[],
    m_ts        BIGINT[],
    m_type      INTEGER[],
    m_content   BYTEA[],
    m_expires   BIGINT[],
    ack_user    UUID[],
    ack_id      UUID[],
    cancel_user UUID[],
    cancel_now  BIGINT
) RETURNS TABLE (o_kind TEXT, o_user UUID, o_id UUID, o_seq BIGINT)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF cardinality(recipients) > 0 THEN
        -- In id order: two batches (of this node or another) never take the
        -- same rows in different orders, so no deadlock; and as the locks
        -- are held until commit, per recipient seq order is commit order.
        PERFORM 1 FROM users WHERE id = ANY(recipients) ORDER BY id FOR NO KEY UPDATE;
        -- One backward index scan per recipient (max() over = ANY is planned
        -- as a bitmap scan that visits every dead, acknowledged row).
        RETURN QUERY
            SELECT 'latest'::TEXT, r.id, NULL::UUID,
                   (SELECT m.seq FROM messages m WHERE m.recipient_id = r.id
                    ORDER BY m.seq DESC LIMIT 1)
            FROM unnest(recipients) AS r(id);
        RETURN QUERY
            WITH v AS (
                SELECT * FROM unnest(m_id, m_recipient, m_sender, m_ts, m_type, m_content, m_expires)
                    WITH ORDINALITY AS v(id, recipient, sender, ts, typ, content, exp, ord)
            ), stored AS (
                INSERT INTO messages (id, recipient_id, sender_id, timestamp_ms, msg_type, content, expires_at)
                SELECT v.id, v.recipient, v.sender, v.ts, v.typ, v.content, v.exp
                FROM v JOIN users ON users.id = v.recipient ORDER BY v.ord
                RETURNING recipient_id, id, seq
            )
            SELECT 'stored'::TEXT, s.recipient_id, s.id, s.seq FROM stored s;
    END IF;
    IF cardinality(ack_id) > 0 THEN
        -- After the inserts: an ACK names a message delivered, so committed
        -- by an earlier batch.
        RETURN QUERY
            WITH gone AS (
                DELETE FROM messages m
                USING unnest(ack_user, ack_id) AS d(recipient_id, id)
                WHERE m.id = d.id AND m.recipient_id = d.recipient_id
                RETURNING m.recipient_id, m.id
            )
            SELECT 'deleted'::TEXT, g.recipient_id, g.id, NULL::BIGINT FROM gone g;
    END IF;
    IF cardinality(cancel_user) > 0 THEN
        UPDATE push_jobs SET due_at_ms = NULL, attempts = 0
        WHERE user_id = ANY(cancel_user) AND due_at_ms IS NOT NULL
          AND (lease_until_ms IS NULL OR lease_until_ms <= cancel_now);
    END IF;
END
$$;
