/*-------------------------------------------------------------------------
 *
 * wait.sql
 *	  Steps that wait (wait.c): "signal" (for a named signal, with a
 *	  timeout), "sleep" (for an interval, or until a time taken from the
 *	  state) and "fan_out" (a child job per item of a list, then their
 *	  outputs in order); orch_signal and orch_signal_key.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/wait.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE TABLE orchestrator.signals (
	id bigserial PRIMARY KEY,
	job_id uuid,
	key text,
	name text NOT NULL,
	payload jsonb NOT NULL,
	org_id uuid,
	sent_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	sent_by regrole,
	delivered_to uuid,
	delivered_at timestamptz,
	CHECK ((job_id IS NULL) <> (key IS NULL))
);
CREATE INDEX signals_for_job ON orchestrator.signals (job_id, name, id) WHERE delivered_at IS NULL AND job_id IS NOT NULL;
CREATE INDEX signals_for_key ON orchestrator.signals (key, name, id) WHERE delivered_at IS NULL AND key IS NOT NULL;
COMMENT ON TABLE orchestrator.signals IS 'Signals sent with orch_signal or orch_signal_key; each is delivered to one job, as the output of its signal step';
COMMENT ON COLUMN orchestrator.signals.id IS 'Signal id (the order signals are delivered in)';
COMMENT ON COLUMN orchestrator.signals.job_id IS 'The job it was sent to (orch_signal), or NULL';
COMMENT ON COLUMN orchestrator.signals.key IS 'The key it was sent to (orch_signal_key), or NULL';
COMMENT ON COLUMN orchestrator.signals.name IS 'Signal name a step waits for';
COMMENT ON COLUMN orchestrator.signals.payload IS 'What the waiting step outputs';
COMMENT ON COLUMN orchestrator.signals.org_id IS 'Org of the job it was delivered to (or sent to)';
COMMENT ON COLUMN orchestrator.signals.sent_at IS 'When it was sent';
COMMENT ON COLUMN orchestrator.signals.sent_by IS 'Role that sent it; NULL when a step sent it (steps run as their definer inside a worker)';
COMMENT ON COLUMN orchestrator.signals.delivered_to IS 'Job whose signal step took it';
COMMENT ON COLUMN orchestrator.signals.delivered_at IS 'When; NULL while it waits for a job to wait for it';

CREATE TABLE orchestrator.waits (
	job_id uuid NOT NULL,
	step_index integer NOT NULL,
	kind text NOT NULL CHECK (kind IN ('signal', 'sleep', 'fan_out')),
	signal text,
	key text,
	until timestamptz NOT NULL,
	since timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (job_id, step_index)
);
CREATE INDEX waits_for_key ON orchestrator.waits (key, signal, since) WHERE key IS NOT NULL;
COMMENT ON TABLE orchestrator.waits IS 'Jobs at a signal, sleep or fan_out step: what they wait for and until when (the job itself is pending with run_at = until)';
COMMENT ON COLUMN orchestrator.waits.job_id IS 'Job';
COMMENT ON COLUMN orchestrator.waits.step_index IS 'Its signal or sleep step (0-based)';
COMMENT ON COLUMN orchestrator.waits.kind IS 'signal | sleep | fan_out';
COMMENT ON COLUMN orchestrator.waits.signal IS 'Signal name waited for';
COMMENT ON COLUMN orchestrator.waits.key IS 'Key the signal may also come to (the step''s "key")';
COMMENT ON COLUMN orchestrator.waits.until IS 'End of the sleep, the signal''s timeout (infinity: none), or when a fan_out looks at its children again';
COMMENT ON COLUMN orchestrator.waits.since IS 'When the job began to wait';

CREATE TABLE orchestrator.fan_children (
	job_id uuid NOT NULL,
	step_index integer NOT NULL,
	ord integer NOT NULL,
	child_id uuid,
	outcome text NOT NULL,
	reason text,
	PRIMARY KEY (job_id, step_index, ord)
);
COMMENT ON TABLE orchestrator.fan_children IS 'The child jobs of each fan_out step, in the order of its list';
COMMENT ON COLUMN orchestrator.fan_children.job_id IS 'The parent job';
COMMENT ON COLUMN orchestrator.fan_children.step_index IS 'Its fan_out step (0-based)';
COMMENT ON COLUMN orchestrator.fan_children.ord IS 'Position of the item in the list, from 1';
COMMENT ON COLUMN orchestrator.fan_children.child_id IS 'The child job; NULL when its event was refused';
COMMENT ON COLUMN orchestrator.fan_children.outcome IS 'What orch_submit_event said of the child''s event: accepted, deferred or skipped';
COMMENT ON COLUMN orchestrator.fan_children.reason IS 'Why, when skipped (chain_depth_exceeded, budget, ...)';

/*
 * step_fan_out runs a fan_out step for step_wait.  The first time, it
 * submits one child event of the step's "sequence" per item "for_each"
 * selects (payload from "payload", "@" the item), each with this job as
 * parent, so chain depth, budget and quiet hours apply to them as to any
 * follow-up, and records them in fan_children.  Then, each time the job
 * runs the step: when every child has ended, the step succeeds with their
 * outputs in the list's order; with "on_child_failure": "fail_fast" (the
 * default) the first child that failed, was cancelled or was refused fails
 * the step and the others are cancelled; otherwise ("collect") the step
 * waits for all and reports each.  Until then the job waits: a child that
 * ends wakes it (job_state.c), and it looks again after a while anyway.
 */
CREATE FUNCTION orchestrator.step_fan_out(p_job_id uuid, p_step_index integer, p_step jsonb, p_state jsonb,
	p_wait orchestrator.waits, OUT outcome text, OUT output jsonb, OUT until timestamptz, OUT error text)
LANGUAGE plpgsql
AS $$
DECLARE
	c_max CONSTANT integer := 1000;
	v_nonce text := gen_random_uuid()::text;
	v_item jsonb;
	v_ord integer := 0;
	r record;
	v_total integer;
	v_done integer;
	v_bad record;
	v_fail_fast boolean := COALESCE(p_step->>'on_child_failure', 'fail_fast') = 'fail_fast';
BEGIN
	IF p_wait.job_id IS NULL THEN
		FOR v_item IN SELECT i FROM jsonb_path_query(p_state, (p_step->>'for_each')::jsonpath, '{}', true) i LOOP
			v_ord := v_ord + 1;
			IF v_ord > c_max THEN
				RAISE EXCEPTION 'fan_out step "%" selects more than % items', p_step->>'name', c_max
					USING ERRCODE = 'program_limit_exceeded', HINT = 'Split the list, or fan out in stages.';
			END IF;
			SELECT * INTO r FROM @extschema@.orch_submit_event(p_step->>'sequence', 'orchestrator:fan_out',
				(p_state->'event'->>'org_id')::uuid, (p_state->'event'->>'user_id')::uuid,
				orchestrator.map_payload(COALESCE(p_step->'payload', '{"item": "@"}'), p_state, v_item),
				p_job_id, dedupe_key => v_nonce || ':' || v_ord);
			INSERT INTO orchestrator.fan_children (job_id, step_index, ord, child_id, outcome, reason)
			VALUES (p_job_id, p_step_index, v_ord, r.job_id, r.outcome, r.reason);
		END LOOP;
		INSERT INTO orchestrator.waits (job_id, step_index, kind, until)
		VALUES (p_job_id, p_step_index, 'fan_out', clock_timestamp());
		p_wait.since := clock_timestamp();
	END IF;

	SELECT count(*), count(*) FILTER (WHERE c.child_id IS NULL OR j.status IS NULL
	                                     OR j.status IN ('completed', 'failed', 'cancelled'))
	INTO v_total, v_done
	FROM orchestrator.fan_children c LEFT JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
	WHERE c.job_id = p_job_id AND c.step_index = p_step_index;
	SELECT c.ord, c.child_id, COALESCE(j.status, 'skipped') AS status, COALESCE(j.last_error, c.reason) AS why
	INTO v_bad
	FROM orchestrator.fan_children c LEFT JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
	WHERE c.job_id = p_job_id AND c.step_index = p_step_index
	  AND (c.child_id IS NULL OR j.status IN ('failed', 'cancelled'))
	ORDER BY c.ord LIMIT 1;

	IF v_fail_fast AND v_bad.ord IS NOT NULL THEN
		-- the others are not needed any more
		FOR r IN SELECT c.child_id FROM orchestrator.fan_children c JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
		         WHERE c.job_id = p_job_id AND c.step_index = p_step_index
		           AND j.status IN ('pending', 'in_progress', 'awaiting_approval') LOOP
			BEGIN
				PERFORM @extschema@.orch_cancel_job(r.child_id);
			EXCEPTION WHEN object_not_in_prerequisite_state THEN
				NULL;	-- it ended meanwhile
			END;
		END LOOP;
		DELETE FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
		outcome := 'failed';
		error := format('child %s of %s (%s) %s%s', v_bad.ord, v_total,
		                COALESCE(v_bad.child_id::text, 'no job'),
		                CASE v_bad.status WHEN 'skipped' THEN 'was refused' ELSE v_bad.status END,
		                COALESCE(': ' || v_bad.why, ''));
		RETURN;
	END IF;
	IF v_done = v_total THEN
		DELETE FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
		outcome := 'succeeded';
		SELECT jsonb_build_object(
			'results', COALESCE(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
				'job_id', c.child_id, 'status', COALESCE(j.status, 'skipped'),
				'outputs', j.context->'outputs', 'error', COALESCE(j.last_error, c.reason)))
				ORDER BY c.ord), '[]'),
			'completed', count(*) FILTER (WHERE j.status = 'completed'),
			'failed', count(*) FILTER (WHERE j.status IS DISTINCT FROM 'completed'))
		INTO output
		FROM orchestrator.fan_children c LEFT JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
		WHERE c.job_id = p_job_id AND c.step_index = p_step_index;
		RETURN;
	END IF;
	-- a child that ends wakes the job; it also looks again, less often the longer it waits
	until := clock_timestamp() + LEAST(interval '1 minute',
	                                   GREATEST(interval '1 second', (clock_timestamp() - p_wait.since) / 4));
	UPDATE orchestrator.waits w SET until = step_fan_out.until
	WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
	outcome := 'deferred';
	error := format('waiting for %s of %s child jobs of sequence "%s"', v_total - v_done, v_total, p_step->>'sequence');
END
$$;
COMMENT ON FUNCTION orchestrator.step_fan_out(uuid, integer, jsonb, jsonb, orchestrator.waits) IS 'Runs a fan_out step: submits its children, then collects their outputs in order or fails fast (for the workers)';

/*
 * signal_lock serialises a signal's sending with a step's looking for it:
 * both take this lock (of the job and name, or of the key and name) in a
 * statement of its own before they look, so either the step sees the
 * signal or the sender sees the step waiting and wakes its job.
 */
CREATE FUNCTION orchestrator.signal_lock(p_target text, p_name text) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_catalog.hashtextextended('orchestrator.signal:' || p_name || ':' || p_target, 0) $$;
COMMENT ON FUNCTION orchestrator.signal_lock(text, text) IS 'The transaction advisory lock of a signal target (job id or key) and name';

/*
 * step_wait runs a signal, sleep or fan_out step for the worker (wait.c):
 * the step succeeds with the signal's payload (or {"slept_until": ...}, or
 * its children's outputs), is skipped or fails at its timeout (or a
 * child's failure), or waits: its job is deferred to "until", not an
 * attempt, and orchestrator.waits says what it waits for.
 */
CREATE FUNCTION orchestrator.step_wait(p_job_id uuid, p_step_index integer, p_step jsonb, p_state jsonb,
	OUT outcome text, OUT output jsonb, OUT until timestamptz, OUT error text)
LANGUAGE plpgsql
AS $$
DECLARE
	v_kind text := p_step->>'kind';
	v_wait orchestrator.waits;
	v_key text;
	v_sig orchestrator.signals;
	v_at jsonb;
BEGIN
	SELECT * INTO v_wait FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;

	IF v_kind = 'fan_out' THEN
		SELECT * INTO outcome, output, until, error
		FROM orchestrator.step_fan_out(p_job_id, p_step_index, p_step, p_state, v_wait);
		RETURN;
	END IF;

	IF v_kind = 'sleep' THEN
		IF v_wait.job_id IS NULL THEN
			IF p_step ? 'for' THEN
				until := clock_timestamp() + (p_step->>'for')::interval;
			ELSE
				v_at := jsonb_path_query_first(p_state, (p_step->>'until')::jsonpath);
				BEGIN
					until := (v_at #>> '{}')::timestamptz;
				EXCEPTION WHEN data_exception THEN
					until := NULL;
				END;
				IF until IS NULL THEN
					outcome := 'failed';
					error := format('"until" %s gives %s, not a time', p_step->>'until', COALESCE(v_at::text, 'nothing'));
					RETURN;
				END IF;
			END IF;
		ELSE
			until := v_wait.until;
		END IF;
		IF until <= clock_timestamp() THEN
			DELETE FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
			outcome := 'succeeded';
			output := jsonb_build_object('slept_until', until);
			RETURN;
		END IF;
		IF v_wait.job_id IS NULL THEN
			INSERT INTO orchestrator.waits (job_id, step_index, kind, until) VALUES (p_job_id, p_step_index, 'sleep', until);
		END IF;
		outcome := 'deferred';
		error := format('sleeping until %s', until);
		RETURN;
	END IF;

	-- a signal step: its key, if it has one, is taken from the state
	IF p_step ? 'key' THEN
		v_key := jsonb_path_query_first(p_state, (p_step->>'key')::jsonpath) #>> '{}';
		IF v_key IS NULL OR v_key = '' THEN
			outcome := 'failed';
			error := format('"key" %s gives no text to wait on', p_step->>'key');
			RETURN;
		END IF;
	END IF;
	-- a sender holds the lock until it commits: look again in a moment
	-- rather than wait for it (two workers waiting on each other's keys
	-- would deadlock)
	IF NOT pg_try_advisory_xact_lock(orchestrator.signal_lock(p_job_id::text, p_step->>'signal'))
	   OR (v_key IS NOT NULL
	       AND NOT pg_try_advisory_xact_lock(orchestrator.signal_lock('key:' || v_key, p_step->>'signal'))) THEN
		outcome := 'deferred';
		until := clock_timestamp() + interval '100 milliseconds';
		error := format('a signal "%s" is being sent; looking again', p_step->>'signal');
		RETURN;
	END IF;
	-- (a statement of its own, after the locks: it sees every signal sent before them)
	SELECT * INTO v_sig FROM orchestrator.signals s
	WHERE s.delivered_at IS NULL AND s.name = p_step->>'signal'
	  AND (s.job_id = p_job_id OR (v_key IS NOT NULL AND s.key = v_key))
	ORDER BY s.id LIMIT 1
	FOR UPDATE SKIP LOCKED;
	IF v_sig.id IS NOT NULL THEN
		UPDATE orchestrator.signals s SET delivered_to = p_job_id, delivered_at = clock_timestamp(),
			org_id = (p_state->'event'->>'org_id')::uuid
		WHERE s.id = v_sig.id;
		DELETE FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
		-- two signals sent to a key may both have woken this job: the next
		-- waiter on the key gets the one still undelivered
		IF v_sig.key IS NOT NULL AND EXISTS (SELECT 1 FROM orchestrator.signals s
		                                     WHERE s.key = v_sig.key AND s.name = v_sig.name AND s.delivered_at IS NULL) THEN
			PERFORM orchestrator.wake_jobs(ARRAY(SELECT orchestrator.signal_waiter(v_sig.key, v_sig.name, NULL)));
		END IF;
		outcome := 'succeeded';
		output := v_sig.payload;
		RETURN;
	END IF;
	IF v_wait.job_id IS NULL THEN
		until := COALESCE(clock_timestamp() + (p_step->>'timeout')::interval, 'infinity');
		INSERT INTO orchestrator.waits (job_id, step_index, kind, signal, key, until)
		VALUES (p_job_id, p_step_index, 'signal', p_step->>'signal', v_key, until);
	ELSE
		until := v_wait.until;
	END IF;
	IF until <= clock_timestamp() THEN
		DELETE FROM orchestrator.waits w WHERE w.job_id = p_job_id AND w.step_index = p_step_index;
		outcome := CASE WHEN p_step->>'on_timeout' = 'skip' THEN 'skipped' ELSE 'failed' END;
		error := format('no signal "%s"%s came within %s', p_step->>'signal',
		                CASE WHEN v_key IS NOT NULL THEN format(' for key "%s"', v_key) ELSE '' END, p_step->>'timeout');
		RETURN;
	END IF;
	outcome := 'deferred';
	error := format('waiting for signal "%s"%s%s', p_step->>'signal',
	                CASE WHEN v_key IS NOT NULL THEN format(' (key "%s")', v_key) ELSE '' END,
	                CASE WHEN until = 'infinity' THEN '' ELSE ' until ' || until END);
END
$$;
COMMENT ON FUNCTION orchestrator.step_wait(uuid, integer, jsonb, jsonb) IS 'Runs a signal, sleep or fan_out step: its output, its timeout, or how long its job waits (for the workers)';

-- who sends a signal: the calling role, unknown inside a step
CREATE FUNCTION orchestrator.signalling_role() RETURNS regrole
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN orchestrator.calling_role();
EXCEPTION WHEN insufficient_privilege THEN
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orchestrator.signalling_role() IS 'The role sending a signal, or NULL inside a step';

/*
 * signal_waiter: the job waiting longest for signal p_name on key p_key
 * (or the job p_job_id, if it waits for it), among jobs that are pending
 * at that very step.
 */
CREATE FUNCTION orchestrator.signal_waiter(p_key text, p_name text, p_job_id uuid) RETURNS uuid
LANGUAGE sql STABLE
AS $$
	SELECT w.job_id FROM orchestrator.waits w
	JOIN orchestrator.sequence_jobs j ON j.id = w.job_id AND j.status = 'pending' AND j.current_step = w.step_index
	WHERE w.kind = 'signal' AND w.signal = p_name
	  AND CASE WHEN p_job_id IS NOT NULL THEN w.job_id = p_job_id ELSE w.key = p_key END
	ORDER BY w.since LIMIT 1
$$;
COMMENT ON FUNCTION orchestrator.signal_waiter(text, text, uuid) IS 'The job a signal should wake: the one waiting longest on its key and name, or the job it is sent to if that waits';

/*
 * deliver_signal stores a signal, and wakes the job that waits for it if
 * one does (under the lock of its target: see signal_lock).  A job whose
 * row a worker holds is not woken: that worker is about to look for the
 * signal (it finds this lock taken and looks again).  Returns the job
 * woken, or NULL.
 */
CREATE FUNCTION orchestrator.deliver_signal(p_job_id uuid, p_key text, p_name text, p_payload jsonb)
RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
	v_job orchestrator.sequence_jobs;
	v_target uuid;
BEGIN
	IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid signal name "%"', p_name
			USING ERRCODE = 'invalid_parameter_value', HINT = 'A signal name is 1 to 100 of A-Z a-z 0-9 _ . : -.';
	END IF;
	IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
		RAISE EXCEPTION 'a signal''s payload must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM orchestrator.check_json_depth(p_payload, 'signal payload');
	p_payload := orchestrator.without_transcripts(p_payload);
	IF p_job_id IS NOT NULL THEN
		SELECT * INTO v_job FROM orchestrator.sequence_jobs j WHERE j.id = p_job_id;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'undefined_object';
		END IF;
		IF orchestrator.caller_user_id() <> v_job.user_id AND NOT orchestrator.caller_is_admin() THEN
			RAISE EXCEPTION 'job % belongs to another user', p_job_id
				USING ERRCODE = 'insufficient_privilege',
				      HINT = 'Only the job''s user, or a member of orchestrator_admin, can signal it.';
		END IF;
		IF v_job.status IN ('completed', 'failed', 'cancelled') THEN
			RAISE EXCEPTION 'job % is %: it will wait for no signal', p_job_id, v_job.status
				USING ERRCODE = 'object_not_in_prerequisite_state';
		END IF;
		PERFORM pg_advisory_xact_lock(orchestrator.signal_lock(p_job_id::text, p_name));
	ELSE
		IF p_key IS NULL OR p_key = '' THEN
			RAISE EXCEPTION 'key must not be NULL or empty' USING ERRCODE = 'null_value_not_allowed';
		END IF;
		-- a key may be any user's: not for a caller acting as one user
		IF orchestrator.caller_user_id() IS NOT NULL AND NOT orchestrator.caller_is_admin() THEN
			RAISE EXCEPTION 'signalling by key is not allowed for a caller acting as a user'
				USING ERRCODE = 'insufficient_privilege',
				      HINT = 'Signal your own job with orch_signal, or send it from a trigger or a service role.';
		END IF;
		PERFORM pg_advisory_xact_lock(orchestrator.signal_lock('key:' || p_key, p_name));
	END IF;
	INSERT INTO orchestrator.signals (job_id, key, name, payload, org_id, sent_by)
	VALUES (p_job_id, p_key, p_name, p_payload, v_job.org_id, orchestrator.signalling_role());
	-- (after the lock: a step that waits for it has committed its wait)
	v_target := orchestrator.signal_waiter(p_key, p_name, p_job_id);
	IF v_target IS NULL THEN
		RETURN NULL;
	END IF;
	PERFORM orchestrator.wake_jobs(ARRAY[v_target]);
	RETURN v_target;
END
$$;
COMMENT ON FUNCTION orchestrator.deliver_signal(uuid, text, text, jsonb) IS 'Stores a signal and wakes the job waiting for it (for orch_signal and orch_signal_key)';

CREATE FUNCTION orch_signal(job_id uuid, name text, payload jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF job_id IS NULL THEN
		RAISE EXCEPTION 'job_id must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'To signal whichever job waits on a key, use orch_signal_key.';
	END IF;
	RETURN orchestrator.deliver_signal(orch_signal.job_id, NULL, orch_signal.name, orch_signal.payload);
END
$$;
COMMENT ON FUNCTION orch_signal(uuid, text, jsonb) IS 'Sends signal "name" to a job: its signal step of that name outputs the payload (now if it waits, else when it gets there); returns the job if it was waiting, else NULL';

CREATE FUNCTION orch_signal_key(key text, name text, payload jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN orchestrator.deliver_signal(NULL, orch_signal_key.key, orch_signal_key.name, orch_signal_key.payload);
END
$$;
COMMENT ON FUNCTION orch_signal_key(text, text, jsonb) IS 'Sends signal "name" to the job that waits on key (the oldest waiter, or the next job to wait on it); returns the job if one was waiting, else NULL';
