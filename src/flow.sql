/*-------------------------------------------------------------------------
 *
 * flow.sql
 *	  Flow control (flow.c): priorities, pauses and drain, concurrency
 *	  limits per org, user or event type, and rate limits per endpoint.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/flow.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE TABLE orchestrator.priorities (
	event_type text PRIMARY KEY,
	priority smallint NOT NULL CHECK (priority BETWEEN 0 AND 1000),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE orchestrator.priorities IS 'Claim priority of each event type''s jobs unless the event gives its own; written by orch_set_priority';
COMMENT ON COLUMN orchestrator.priorities.event_type IS 'Event type';
COMMENT ON COLUMN orchestrator.priorities.priority IS '0 to 1000: each point puts the type''s jobs one minute earlier in the claim order';
COMMENT ON COLUMN orchestrator.priorities.updated_at IS 'Last change';

CREATE TABLE orchestrator.pauses (
	scope text NOT NULL CHECK (scope IN ('all', 'event_type', 'org')),
	key text NOT NULL,
	drain boolean NOT NULL DEFAULT false,
	paused_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	paused_by regrole NOT NULL,
	PRIMARY KEY (scope, key)
);
COMMENT ON TABLE orchestrator.pauses IS 'What is paused or drained; written by orch_pause, orch_drain and orch_resume';
COMMENT ON COLUMN orchestrator.pauses.scope IS 'all | event_type | org';
COMMENT ON COLUMN orchestrator.pauses.key IS 'The event type or org id paused; empty for all';
COMMENT ON COLUMN orchestrator.pauses.drain IS 'false: no step of a matching job runs; true (drain): jobs that have started finish, the others wait';
COMMENT ON COLUMN orchestrator.pauses.paused_at IS 'When it was paused';
COMMENT ON COLUMN orchestrator.pauses.paused_by IS 'Role that paused it';

CREATE TABLE orchestrator.concurrency_limits (
	scope text NOT NULL CHECK (scope IN ('event_type', 'org', 'user')),
	key text NOT NULL,
	max_running integer NOT NULL CHECK (max_running BETWEEN 1 AND 1000000),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (scope, key)
);
COMMENT ON TABLE orchestrator.concurrency_limits IS 'At most max_running jobs of one key in progress at once; written by orch_set_concurrency_limit';
COMMENT ON COLUMN orchestrator.concurrency_limits.scope IS 'event_type | org | user';
COMMENT ON COLUMN orchestrator.concurrency_limits.key IS 'The event type, org id or user id limited, or * for each one (a named key''s own limit wins)';
COMMENT ON COLUMN orchestrator.concurrency_limits.max_running IS 'Jobs of the key that may be in progress at once';
COMMENT ON COLUMN orchestrator.concurrency_limits.updated_at IS 'Last change';

-- Jobs waiting for a concurrency slot, oldest first per key.  Not a
-- foreign key: it would put a trigger on every update of the queue.
CREATE TABLE orchestrator.flow_waits (
	job_id uuid PRIMARY KEY,
	key text NOT NULL,
	since timestamptz NOT NULL,
	woken boolean NOT NULL DEFAULT false
);
CREATE INDEX flow_waits_key ON orchestrator.flow_waits (key, since);
COMMENT ON TABLE orchestrator.flow_waits IS 'Jobs held back by a concurrency limit, until a slot of their key frees';
COMMENT ON COLUMN orchestrator.flow_waits.job_id IS 'Job';
COMMENT ON COLUMN orchestrator.flow_waits.key IS 'The full key: org:<id>, user:<id> or event_type:<name>';
COMMENT ON COLUMN orchestrator.flow_waits.since IS 'Its place in the claim order when it was first held: freed slots go to the earliest';
COMMENT ON COLUMN orchestrator.flow_waits.woken IS 'Given a freed slot and due now; counts against the key until claimed';

ALTER TABLE orchestrator.endpoints
	ADD COLUMN max_per_second real CHECK (max_per_second >= 0.001 AND max_per_second <= 100000);
COMMENT ON COLUMN orchestrator.endpoints.max_per_second IS 'At most this many requests a second to the endpoint, across all workers (NULL: no limit); set by orch_set_rate_limit';

-- Workers cache whether any flow control is set; a change of these
-- tables tells them at commit (flow.c).
CREATE FUNCTION orchestrator.flow_changed() RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'orch_flow_changed';
COMMENT ON FUNCTION orchestrator.flow_changed() IS 'Trigger: tells the workers, at commit, that flow control changed';

CREATE TRIGGER flow_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orchestrator.pauses
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator.flow_changed();
CREATE TRIGGER flow_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orchestrator.concurrency_limits
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator.flow_changed();

CREATE FUNCTION orchestrator.wake_jobs(p_ids uuid[]) RETURNS integer
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'orch_wake_jobs_sql';
COMMENT ON FUNCTION orchestrator.wake_jobs(uuid[]) IS 'Makes the pending jobs among the ids due now and wakes the workers (a slot freed, a pause lifted, a signal sent); jobs whose rows another transaction holds are left alone';

CREATE FUNCTION orchestrator.rate_slot(p_endpoint text, p_per_second real, p_job_id uuid) RETURNS timestamptz
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'orch_rate_slot';
COMMENT ON FUNCTION orchestrator.rate_slot(text, real, uuid) IS 'NULL when the job may send to the endpoint now; else the time of the slot reserved for it (shared memory, across workers)';

CREATE FUNCTION orchestrator.flow_running(p_key text, p_except uuid[] DEFAULT '{}') RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(*) FROM orchestrator.sequence_jobs j
	WHERE j.status = 'in_progress' AND j.id <> ALL (p_except)
	  AND CASE split_part(p_key, ':', 1)
	      WHEN 'org' THEN j.org_id::text = substr(p_key, 5)
	      WHEN 'user' THEN j.user_id::text = substr(p_key, 6)
	      ELSE j.event_type = substr(p_key, 12) END
$$;
COMMENT ON FUNCTION orchestrator.flow_running(text, uuid[]) IS 'Jobs of a full key (org:<id>, user:<id>, event_type:<name>) in progress now, but for p_except';

CREATE FUNCTION orchestrator.flow_limit(p_key text) RETURNS integer
LANGUAGE sql STABLE
AS $$
	SELECT l.max_running FROM orchestrator.concurrency_limits l
	WHERE l.scope = split_part(p_key, ':', 1)
	  AND l.key IN (substr(p_key, length(split_part(p_key, ':', 1)) + 2), '*')
	ORDER BY l.key = '*' LIMIT 1
$$;
COMMENT ON FUNCTION orchestrator.flow_limit(text) IS 'The concurrency limit of a full key: its own, else its scope''s *, else NULL';

/*
 * flow_gate decides, in the claim's transaction and under the flow lock
 * (flow.c), which of the jobs just claimed may run: a job whose org, user
 * or event type has its limit of jobs in progress already, counting those
 * claimed before it in this batch, waits (one row each, with why).  It
 * records the waits; the caller hands the jobs back (job_state.c).
 */
CREATE FUNCTION orchestrator.flow_gate(p_ids uuid[], OUT job_id uuid, OUT note text)
RETURNS SETOF record
LANGUAGE sql
AS $$
	WITH b AS (SELECT j.id, u.n, k.key, orchestrator.claim_order(j.run_at, j.priority) AS place
	           FROM unnest(p_ids) WITH ORDINALITY u(id, n)
	           JOIN orchestrator.sequence_jobs j ON j.id = u.id
	           CROSS JOIN LATERAL (VALUES ('org:' || j.org_id), ('user:' || j.user_id),
	                                      ('event_type:' || j.event_type)) k(key)),
	     l AS (SELECT b.*, orchestrator.flow_limit(b.key) AS max_running,
	                  row_number() OVER (PARTITION BY b.key ORDER BY b.n) AS rank
	           FROM b),
	     c AS (SELECT d.key, orchestrator.flow_running(d.key, p_ids) AS running
	           FROM (SELECT DISTINCT l.key FROM l WHERE l.max_running IS NOT NULL) d),
	     o AS (SELECT DISTINCT ON (l.id) l.id, l.key, l.place,
	                  format('waiting for a slot: %s is at its limit of %s job(s) in progress', l.key,
	                         l.max_running) AS note
	           FROM l JOIN c ON c.key = l.key
	           WHERE c.running + l.rank > l.max_running
	           ORDER BY l.id, l.key),
	     i AS (INSERT INTO orchestrator.flow_waits AS w (job_id, key, since)
	           SELECT o.id, o.key, o.place FROM o
	           ON CONFLICT ON CONSTRAINT flow_waits_pkey
	           DO UPDATE SET key = EXCLUDED.key, since = LEAST(w.since, EXCLUDED.since), woken = false),
	     d AS (DELETE FROM orchestrator.flow_waits w
	           WHERE w.job_id = ANY (p_ids) AND w.job_id NOT IN (SELECT o.id FROM o))
	SELECT o.id, o.note FROM o
$$;
COMMENT ON FUNCTION orchestrator.flow_gate(uuid[]) IS 'Which claimed jobs must wait for a concurrency slot, and why (for the workers'' claim)';

/*
 * flow_wake gives freed slots to waiting jobs, oldest first per key: for
 * each key with waiters, as many as its limit leaves free once the jobs in
 * progress and those already woken are counted.  A key whose limit was
 * removed wakes all its waiters.  Run by each claim under the flow lock.
 */
CREATE FUNCTION orchestrator.flow_wake() RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	v_ids uuid[];
BEGIN
	-- woken jobs that were claimed, cancelled or removed no longer count
	DELETE FROM orchestrator.flow_waits w
	WHERE w.woken AND NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs j
	                              WHERE j.id = w.job_id AND j.status = 'pending');
	WITH RECURSIVE k(key) AS (
		SELECT min(w.key) FROM orchestrator.flow_waits w
		UNION ALL
		SELECT (SELECT min(w.key) FROM orchestrator.flow_waits w WHERE w.key > k.key) FROM k WHERE k.key IS NOT NULL),
	f AS (SELECT k.key,
	             COALESCE(orchestrator.flow_limit(k.key), 1000000) - orchestrator.flow_running(k.key)
	             - (SELECT count(*) FROM orchestrator.flow_waits w WHERE w.key = k.key AND w.woken) AS free
	      FROM k WHERE k.key IS NOT NULL),
	p AS (SELECT x.job_id FROM f CROSS JOIN LATERAL (
	          SELECT w.job_id FROM orchestrator.flow_waits w
	          WHERE w.key = f.key AND NOT w.woken ORDER BY w.since LIMIT GREATEST(f.free, 0)) x),
	u AS (UPDATE orchestrator.flow_waits w SET woken = true FROM p WHERE w.job_id = p.job_id RETURNING w.job_id)
	SELECT array_agg(u.job_id) INTO v_ids FROM u;
	IF v_ids IS NULL THEN
		RETURN 0;
	END IF;
	-- (a job whose row another transaction holds is skipped, not waited
	-- for: the claim holds the flow lock)
	RETURN orchestrator.wake_jobs(v_ids);
END
$$;
COMMENT ON FUNCTION orchestrator.flow_wake() IS 'Wakes jobs waiting for a concurrency slot as slots free (for the workers'' claim)';

/*
 * flow_paused: why job p_job_id may not run its next step now (paused, or
 * drained and p_starting: it has run no step yet), or NULL.  The pause row
 * is locked SHARE until the caller commits, so an orch_resume that deletes
 * it, or an orch_pause that turns it into a drain, waits for the job's
 * deferral to be written, then wakes it.
 */
CREATE FUNCTION orchestrator.flow_paused(p_job_id uuid, p_starting boolean) RETURNS text
LANGUAGE sql
AS $$
	SELECT CASE WHEN p.drain THEN 'draining' ELSE 'paused' END
	       || CASE p.scope WHEN 'all' THEN '' ELSE format(' (%s %s)', p.scope, p.key) END
	       || ' since ' || p.paused_at
	FROM orchestrator.sequence_jobs j
	JOIN orchestrator.pauses p
	  ON (p.scope = 'all' OR (p.scope = 'event_type' AND p.key = j.event_type)
	      OR (p.scope = 'org' AND p.key = j.org_id::text))
	 AND (NOT p.drain
	      -- drain: only work not under way (a fan-out's children are part of their parent's)
	      OR (p_starting AND j.event_source <> 'orchestrator:fan_out'
	          AND NOT EXISTS (SELECT 1 FROM orchestrator.waits w WHERE w.job_id = j.id)))
	WHERE j.id = p_job_id
	ORDER BY p.paused_at LIMIT 1
	FOR SHARE OF p
$$;
COMMENT ON FUNCTION orchestrator.flow_paused(uuid, boolean) IS 'Why a job may not run its next step (paused or draining), or NULL (for the workers)';

/*
 * held_jobs: the jobs a pause of p_scope and p_key (as stored) holds now:
 * pending at infinity, not waiting at a signal, sleep or fan_out step.
 * SECURITY DEFINER, like flow_running: orchestrator.flow_controls calls
 * both for readers who may not read the queue itself.
 */
CREATE FUNCTION orchestrator.held_jobs(p_scope text, p_key text) RETURNS uuid[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY(
		SELECT j.id FROM orchestrator.sequence_jobs j
		WHERE j.status = 'pending'
		  AND orchestrator.claim_order(j.run_at, j.priority) = 'infinity'
		  AND NOT EXISTS (SELECT 1 FROM orchestrator.waits w WHERE w.job_id = j.id)
		  AND (p_scope = 'all'
		       OR (p_scope = 'event_type' AND j.event_type = p_key)
		       OR (p_scope = 'org' AND j.org_id::text = p_key)))
$$;
COMMENT ON FUNCTION orchestrator.held_jobs(text, text) IS 'The jobs a pause of this scope and key holds now (pending until resumed)';

-- Operator API

CREATE FUNCTION orchestrator.check_flow_scope(p_scope text, p_key text, p_scopes text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF p_scope IS NULL OR NOT p_scope = ANY (p_scopes) THEN
		RAISE EXCEPTION 'unknown scope "%"', p_scope
			USING ERRCODE = 'invalid_parameter_value', HINT = format('Scopes: %s.', array_to_string(p_scopes, ', '));
	END IF;
	IF p_scope = 'all' THEN
		IF p_key IS NOT NULL THEN
			RAISE EXCEPTION 'scope "all" takes no key' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN '';
	END IF;
	IF p_key IS NULL OR p_key = '' THEN
		RAISE EXCEPTION 'scope "%" needs a key', p_scope
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = CASE WHEN '*' = ANY (p_scopes) THEN 'Give the event type, org id or user id, or * for each.'
			                  ELSE 'Give the event type or org id.' END;
	END IF;
	IF p_scope IN ('org', 'user') AND p_key <> '*' AND NOT p_key ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
		RAISE EXCEPTION 'key "%" of scope "%" is not a uuid', p_key, p_scope USING ERRCODE = 'invalid_text_representation';
	END IF;
	RETURN CASE WHEN p_scope IN ('org', 'user') AND p_key <> '*' THEN p_key::uuid::text ELSE p_key END;
END
$$;
COMMENT ON FUNCTION orchestrator.check_flow_scope(text, text, text[]) IS 'Validates a flow control''s scope and key; returns the key as stored';

CREATE FUNCTION orch_set_priority(event_type text, priority integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF event_type IS NULL THEN
		RAISE EXCEPTION 'event_type must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF priority IS NULL OR priority = 0 THEN
		DELETE FROM orchestrator.priorities p WHERE p.event_type = orch_set_priority.event_type;
		RETURN;
	END IF;
	IF priority NOT BETWEEN 0 AND 1000 THEN
		RAISE EXCEPTION 'priority % is out of range', priority
			USING ERRCODE = 'invalid_parameter_value', HINT = 'A priority is 0 (the default) to 1000; each point is a minute ahead in the queue.';
	END IF;
	INSERT INTO orchestrator.priorities AS p (event_type, priority) VALUES (orch_set_priority.event_type, priority)
	ON CONFLICT ON CONSTRAINT priorities_pkey DO UPDATE SET priority = EXCLUDED.priority, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_set_priority(text, integer) IS 'Sets the claim priority (0-1000) of an event type''s new jobs; 0 or NULL removes it';

CREATE FUNCTION orch_pause(scope text DEFAULT 'all', key text DEFAULT NULL, drain boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_key text := orchestrator.check_flow_scope(scope, key, ARRAY['all', 'event_type', 'org']);
BEGIN
	IF drain IS NULL THEN
		RAISE EXCEPTION 'drain must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO orchestrator.pauses AS p (scope, key, drain, paused_by)
	VALUES (orch_pause.scope, v_key, orch_pause.drain, orchestrator.calling_role())
	ON CONFLICT ON CONSTRAINT pauses_pkey DO UPDATE SET drain = EXCLUDED.drain, paused_at = now(), paused_by = EXCLUDED.paused_by;
	-- a pause turned into a drain lets started jobs go on: wake what it held
	-- (jobs not started are held again at their next step)
	IF drain THEN
		PERFORM orchestrator.wake_jobs(orchestrator.held_jobs(orch_pause.scope, v_key));
	END IF;
END
$$;
COMMENT ON FUNCTION orch_pause(text, text, boolean) IS 'Pauses jobs (scope all, event_type or org): none of their steps runs until orch_resume; with drain, jobs already started finish and the others wait';

CREATE FUNCTION orch_drain() RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.orch_pause('all', NULL, true) $$;
COMMENT ON FUNCTION orch_drain() IS 'Drains the engine: jobs already started finish, no new job starts until orch_resume()';

CREATE FUNCTION orch_resume(scope text DEFAULT 'all', key text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_key text := orchestrator.check_flow_scope(scope, key, ARRAY['all', 'event_type', 'org']);
	v_paused boolean;
	v_held uuid[];
BEGIN
	-- waits for the workers that are holding jobs back for this pause ...
	DELETE FROM orchestrator.pauses p WHERE p.scope = orch_resume.scope AND p.key = v_key;
	v_paused := FOUND;
	-- ... then sees them: the jobs it held run again (those another pause
	-- still holds are held again at their next step)
	v_held := orchestrator.held_jobs(orch_resume.scope, v_key);
	-- a pause deleted by hand left its jobs held: resuming its scope frees them
	IF NOT v_paused AND cardinality(v_held) = 0 THEN
		RAISE EXCEPTION 'nothing is paused for scope "%"%', scope, COALESCE(format(' key "%s"', key), '')
			USING ERRCODE = 'undefined_object', HINT = 'orchestrator.pauses lists what is paused.';
	END IF;
	RETURN orchestrator.wake_jobs(v_held);
END
$$;
COMMENT ON FUNCTION orch_resume(text, text) IS 'Lifts a pause or drain; the jobs it held run again.  Returns how many were woken';

CREATE FUNCTION orch_set_concurrency_limit(scope text, key text, max_running integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_key text := orchestrator.check_flow_scope(scope, key, ARRAY['event_type', 'org', 'user']);
BEGIN
	IF max_running IS NULL THEN
		DELETE FROM orchestrator.concurrency_limits l WHERE l.scope = orch_set_concurrency_limit.scope AND l.key = v_key;
		RETURN;
	END IF;
	IF max_running NOT BETWEEN 1 AND 1000000 THEN
		RAISE EXCEPTION 'max_running % is out of range', max_running
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give 1 to 1000000, or NULL to remove the limit.';
	END IF;
	INSERT INTO orchestrator.concurrency_limits AS l (scope, key, max_running)
	VALUES (orch_set_concurrency_limit.scope, v_key, orch_set_concurrency_limit.max_running)
	ON CONFLICT ON CONSTRAINT concurrency_limits_pkey DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now();
END
$$;
COMMENT ON FUNCTION orch_set_concurrency_limit(text, text, integer) IS 'At most max_running jobs of a key (scope event_type, org or user; key a value or * for each) in progress at once; NULL removes the limit';

CREATE FUNCTION orch_set_rate_limit(endpoint text, max_per_second real) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF max_per_second IS NOT NULL AND NOT (max_per_second >= 0.001 AND max_per_second <= 100000) THEN
		RAISE EXCEPTION 'max_per_second % is out of range', max_per_second
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give 0.001 to 100000 (0.5 is one request every 2 s), or NULL for no limit.';
	END IF;
	UPDATE orchestrator.endpoints e SET max_per_second = orch_set_rate_limit.max_per_second, updated_at = now()
	WHERE e.name = orch_set_rate_limit.endpoint;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', endpoint
			USING ERRCODE = 'undefined_object', HINT = 'Define it with orch_define_endpoint.';
	END IF;
END
$$;
COMMENT ON FUNCTION orch_set_rate_limit(text, real) IS 'At most max_per_second requests a second to an endpoint, across all workers (NULL: no limit); a job over it waits for its slot';

CREATE VIEW orchestrator.flow_controls AS
	SELECT 'pause'::text AS control, p.scope, NULLIF(p.key, '') AS key,
	       CASE WHEN p.drain THEN 'drain' ELSE 'pause' END AS setting,
	       cardinality(orchestrator.held_jobs(p.scope, p.key))::bigint AS waiting,
	       NULL::bigint AS running
	FROM orchestrator.pauses p
	UNION ALL
	SELECT 'concurrency_limit', l.scope, l.key, l.max_running::text,
	       (SELECT count(*) FROM orchestrator.flow_waits w
	        WHERE w.key LIKE l.scope || ':' || CASE l.key WHEN '*' THEN '%' ELSE l.key END),
	       CASE WHEN l.key <> '*' THEN orchestrator.flow_running(l.scope || ':' || l.key) END
	FROM orchestrator.concurrency_limits l
	UNION ALL
	SELECT 'priority', 'event_type', p.event_type, p.priority::text, NULL, NULL FROM orchestrator.priorities p
	UNION ALL
	SELECT 'rate_limit', 'endpoint', e.name, e.max_per_second || '/s', NULL, NULL
	FROM orchestrator.endpoints e WHERE e.max_per_second IS NOT NULL;
COMMENT ON VIEW orchestrator.flow_controls IS 'Every flow control in force: pauses and drains (with the jobs they hold), concurrency limits (jobs waiting, and running for a named key), priorities, endpoint rate limits';
