-- The learning network's routines: sharing (every database), merging (a hub), and
-- heal.network, what a database sees of it. pgheal network hub|join|leave sets up the
-- publications and subscriptions; these only keep the tables.

CREATE OR REPLACE FUNCTION heal.share_patterns() RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.sharing import share
return share()
$$;
COMMENT ON FUNCTION heal.share_patterns() IS
    'Bring this database''s rows of heal.shared_patterns up to date (heal.scan() does it '
    'every run); returns how many it shares.';

-- Merging, on a hub: one row of heal.network_patterns per pattern, from the rows of
-- the members that joined it. Serialized per pattern, so two members' rows arriving at
-- once are both counted.
CREATE OR REPLACE FUNCTION heal._merge_pattern(p_kind text, p_object_kind text,
                                               p_object text, p_extension text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
BEGIN
    -- One lock for all merging, whatever order rows come in (a lock per pattern would
    -- deadlock two members' transactions, and fill the lock table): a table lock only
    -- pgheal's owner may take (readers' ACCESS SHARE does not conflict).
    LOCK TABLE heal.network_patterns IN SHARE ROW EXCLUSIVE MODE;
    SELECT count(DISTINCT s.member_id)::integer AS members,
           coalesce(sum(s.applied), 0)::bigint AS applied,
           coalesce(sum(s.held), 0)::bigint AS held,
           -- what most members say, not whoever writes the greatest string
           mode() WITHIN GROUP (ORDER BY s.sqlstate) AS sqlstate,
           mode() WITHIN GROUP (ORDER BY s.pattern) AS pattern,
           mode() WITHIN GROUP (ORDER BY s.os_package) AS os_package,
           max(s.updated_at) AS updated_at
      INTO m
      FROM heal.shared_patterns s
      JOIN heal.network_members n ON n.member_id OPERATOR(pg_catalog.=) s.member_id
     WHERE s.kind OPERATOR(pg_catalog.=) p_kind
       AND s.object_kind OPERATOR(pg_catalog.=) p_object_kind
       AND s.object OPERATOR(pg_catalog.=) p_object
       AND s.extension OPERATOR(pg_catalog.=) p_extension;
    IF m.members OPERATOR(pg_catalog.=) 0 THEN
        DELETE FROM heal.network_patterns
         WHERE kind OPERATOR(pg_catalog.=) p_kind
           AND object_kind OPERATOR(pg_catalog.=) p_object_kind
           AND object OPERATOR(pg_catalog.=) p_object
           AND extension OPERATOR(pg_catalog.=) p_extension;
        RETURN;
    END IF;
    INSERT INTO heal.network_patterns AS p (kind, object_kind, object, extension, sqlstate,
           pattern, os_package, members, applied, held, confidence, updated_at)
    VALUES (p_kind, p_object_kind, p_object, p_extension, m.sqlstate, m.pattern,
            m.os_package, m.members, m.applied, m.held,
            -- a fix: the rule of succession over the fleet's applications; knowledge of
            -- what an installed extension provides is the catalog's, certain
            CASE p_kind WHEN 'fix'
                 THEN ((m.held OPERATOR(pg_catalog.+) 1)::real
                       OPERATOR(pg_catalog./) (m.applied OPERATOR(pg_catalog.+) 2)::real)
                 ELSE 1 END,
            m.updated_at)
    ON CONFLICT (kind, object_kind, object, extension) DO UPDATE
       SET sqlstate = EXCLUDED.sqlstate, pattern = EXCLUDED.pattern,
           os_package = EXCLUDED.os_package, members = EXCLUDED.members,
           applied = EXCLUDED.applied, held = EXCLUDED.held,
           confidence = EXCLUDED.confidence, updated_at = EXCLUDED.updated_at
     WHERE (p.sqlstate, p.pattern, p.os_package, p.members, p.applied, p.held)
           IS DISTINCT FROM (EXCLUDED.sqlstate, EXCLUDED.pattern, EXCLUDED.os_package,
                             EXCLUDED.members, EXCLUDED.applied, EXCLUDED.held);
END
$$;
COMMENT ON FUNCTION heal._merge_pattern(text, text, text, text) IS
    'Internal: recompute one pattern of heal.network_patterns from heal.shared_patterns.';

CREATE OR REPLACE FUNCTION heal._merge_shared() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        PERFORM heal._merge_pattern(OLD.kind, OLD.object_kind, OLD.object, OLD.extension);
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE'
       AND (TG_OP OPERATOR(pg_catalog.=) 'INSERT'
            OR (NEW.kind, NEW.object_kind, NEW.object, NEW.extension)
               IS DISTINCT FROM (OLD.kind, OLD.object_kind, OLD.object, OLD.extension)) THEN
        PERFORM heal._merge_pattern(NEW.kind, NEW.object_kind, NEW.object, NEW.extension);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION heal._merge_shared() IS
    'Internal: trigger of heal.shared_patterns on a hub (fires for replicated rows too).';

-- On a hub, before a member's row is taken: rows arrive from databases the hub does
-- not control. A row is kept only when it carries the id of the member whose
-- subscription applies it (a member speaks for itself alone, and deletes only its
-- own rows), with counts in bounds and names of the shape of an extension's, a
-- package's, an SQLSTATE; any other row is dropped, so one member cannot stop
-- another's subscription.
CREATE OR REPLACE FUNCTION heal._check_shared() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sender uuid;
    applying boolean;
BEGIN
    SELECT true, n.member_id INTO applying, sender
      FROM pg_catalog.pg_stat_subscription st
      LEFT JOIN heal.network_members n ON n.subscription OPERATOR(pg_catalog.=) st.subname
     WHERE st.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
     LIMIT 1;
    IF applying IS NULL THEN
        RETURN coalesce(NEW, OLD);  -- pgheal's own work on the hub (a leave, its scan)
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT'
       AND OLD.member_id IS DISTINCT FROM sender THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NEW.member_id IS DISTINCT FROM sender
       OR NEW.applied OPERATOR(pg_catalog.>) 1000000000
       OR NEW.held OPERATOR(pg_catalog.>) NEW.applied
       OR pg_catalog.length(NEW.object) OPERATOR(pg_catalog.>) 200
       OR NEW.object_kind OPERATOR(pg_catalog.!~) '^[a-z_]{1,30}$'
       OR NEW.extension OPERATOR(pg_catalog.!~) '^[A-Za-z0-9_.-]{1,63}$'
       OR NEW.sqlstate OPERATOR(pg_catalog.!~) '^[0-9A-Z]{5}$'
       OR pg_catalog.length(NEW.pattern) OPERATOR(pg_catalog.>) 200
       OR NEW.os_package OPERATOR(pg_catalog.!~) '^[a-z0-9{}][a-z0-9+.{}-]{0,99}$' THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION heal._check_shared() IS
    'Internal: on a hub, keeps only rows a member may send (its own id, bounded counts, '
    'names of the right shape).';

-- The hub's row triggers, made once and disabled: a hub enables them ALWAYS (pgheal
-- network hub), so they fire for the rows its subscriptions apply; a member's own rows
-- are checked and merged by its hub.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('shared_patterns_check', 'BEFORE', '_check_shared'),
                                   ('shared_patterns_merge', 'AFTER', '_merge_shared'))
                           AS v(name, timing, func)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                        WHERE tgrelid = 'heal.shared_patterns'::pg_catalog.regclass
                          AND tgname = t.name) THEN
            EXECUTE pg_catalog.format(
                'CREATE TRIGGER %I %s INSERT OR UPDATE OR DELETE ON heal.shared_patterns '
                'FOR EACH ROW EXECUTE FUNCTION heal.%I()', t.name, t.timing, t.func);
            EXECUTE pg_catalog.format(
                'ALTER TABLE heal.shared_patterns DISABLE TRIGGER %I', t.name);
        END IF;
    END LOOP;
END
$$;

-- TRUNCATE is not replicated (the publications carry inserts, updates and deletes:
-- a member's TRUNCATE would empty the hub's table of every member's rows), so it is
-- refused: DELETE rows instead, which replicate one by one.
CREATE OR REPLACE FUNCTION heal._refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'heal.% is replicated in the learning network: DELETE its rows instead '
                    'of TRUNCATE (which is not replicated)', TG_TABLE_NAME
        USING ERRCODE = 'feature_not_supported';
END
$$;
COMMENT ON FUNCTION heal._refuse_truncate() IS
    'Internal: keeps TRUNCATE off the tables the learning network replicates.';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['shared_patterns', 'network_patterns'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                        WHERE tgrelid = ('heal.' || t)::pg_catalog.regclass
                          AND tgname = t || '_no_truncate') THEN
            EXECUTE pg_catalog.format(
                'CREATE TRIGGER %I BEFORE TRUNCATE ON heal.%I FOR EACH STATEMENT '
                'EXECUTE FUNCTION heal._refuse_truncate()', t || '_no_truncate', t);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION heal.merge_network() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k record;
    n integer := 0;
BEGIN
    FOR k IN SELECT kind, object_kind, object, extension FROM heal.shared_patterns
             UNION SELECT kind, object_kind, object, extension FROM heal.network_patterns
    LOOP
        PERFORM heal._merge_pattern(k.kind, k.object_kind, k.object, k.extension);
        n := n OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION heal.merge_network() IS
    'On a hub: recompute every row of heal.network_patterns from the members'' rows.';

-- What this database sees of the network: itself, and one row per subscription (a
-- member's to its hub; a hub's to each member), with the patterns each way.
CREATE OR REPLACE VIEW heal.network AS
WITH me AS (SELECT member_id, is_hub, hub_since, joined_at FROM heal.network_member),
subs AS (
    SELECT s.subname, s.subenabled, st.pid, st.last_msg_send_time, st.last_msg_receipt_time,
           st.latest_end_time, e.apply_error_count, e.sync_error_count,
           (SELECT count(*) FROM pg_catalog.pg_subscription_rel r
             WHERE r.srsubid = s.oid AND r.srsubstate <> 'r') AS syncing
      FROM pg_catalog.pg_subscription s
      LEFT JOIN pg_catalog.pg_stat_subscription st
             ON st.subid = s.oid AND st.relid IS NULL
      LEFT JOIN pg_catalog.pg_stat_subscription_stats e ON e.subid = s.oid
     WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                         WHERE datname = pg_catalog.current_database())
       AND s.subname ~ '^pgheal_'
)
SELECT CASE WHEN me.is_hub THEN 'hub' WHEN me.joined_at IS NOT NULL THEN 'member'
            ELSE 'alone' END AS role,
       me.member_id,
       coalesce(n.member_id::text, CASE WHEN s.subname IS NOT NULL THEN 'hub' END) AS peer,
       s.subname AS subscription,
       s.subenabled AS enabled,
       s.pid IS NOT NULL AS running,
       s.latest_end_time AS last_sync,
       s.last_msg_receipt_time AS last_contact,
       -- Since the subscriber last confirmed a position to its publisher: it confirms
       -- at least every wal_receiver_status_interval while it applies, and stops while
       -- applying is stuck or the publisher is away.
       CASE WHEN s.subname IS NOT NULL
            THEN pg_catalog.clock_timestamp() - s.latest_end_time END AS lag,
       s.apply_error_count + s.sync_error_count AS errors,
       s.syncing AS tables_syncing,
       CASE WHEN n.member_id IS NOT NULL
            THEN (SELECT count(*) FROM heal.shared_patterns x WHERE x.member_id = n.member_id)
            ELSE (SELECT count(*) FROM heal.network_patterns) END AS patterns_in,
       CASE WHEN me.is_hub THEN (SELECT count(*) FROM heal.network_patterns)
            ELSE (SELECT count(*) FROM heal.shared_patterns x
                   WHERE x.member_id = me.member_id) END AS patterns_out
  FROM me
  LEFT JOIN subs s ON true
  LEFT JOIN heal.network_members n ON n.subscription = s.subname;
COMMENT ON VIEW heal.network IS
    'The learning network as this database sees it: its role and member id, each '
    'subscription (peer, enabled, running, last sync, lag from pg_stat_subscription) and '
    'the patterns it receives and sends.';
