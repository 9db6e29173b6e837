/*-------------------------------------------------------------------------
 *
 * submit.sql
 *	  orch_submit_event (submit.c) and the quiet-hours rule it applies.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/submit.sql
 *
 *-------------------------------------------------------------------------
 */

-- State helpers used by submit and the worker

CREATE FUNCTION orchestrator.next_active_time(p_user_id uuid, p_at timestamptz DEFAULT pg_catalog.now())
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	s time;
	e time;
	tz text;
	lt time;
	ld date;
BEGIN
	SELECT p.quiet_hours_start, p.quiet_hours_end, p.timezone INTO s, e, tz
	FROM orchestrator.user_preferences_source p WHERE p.user_id = p_user_id;
	IF s IS NULL OR e IS NULL OR s = e THEN
		RETURN NULL;
	END IF;
	lt := (p_at AT TIME ZONE tz)::time;
	ld := (p_at AT TIME ZONE tz)::date;
	IF s < e AND lt >= s AND lt < e THEN
		RETURN (ld + e) AT TIME ZONE tz;
	ELSIF s > e AND lt >= s THEN
		RETURN (ld + 1 + e) AT TIME ZONE tz;
	ELSIF s > e AND lt < e THEN
		RETURN (ld + e) AT TIME ZONE tz;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orchestrator.next_active_time(uuid, timestamptz) IS 'NULL when the user is inside active hours at the given time, else the start of the next active window';

-- C functions

CREATE FUNCTION orch_submit_event(
	type text, source text, org_id uuid, user_id uuid,
	payload jsonb DEFAULT '{}', parent_job_id uuid DEFAULT NULL,
	dedupe_key text DEFAULT NULL, priority integer DEFAULT NULL,
	OUT outcome text, OUT job_id uuid, OUT run_at timestamptz, OUT reason text)
RETURNS record
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orch_submit_event';
COMMENT ON FUNCTION orch_submit_event(text, text, uuid, uuid, jsonb, uuid, text, integer) IS
'Validates an event (org/user exist, type enabled, quiet hours, budget, dedupe) and enqueues a job in the caller''s transaction, with the given priority (0-1000) or its type''s; returns outcome, job_id, run_at, reason';

CREATE FUNCTION orch_submit_events(
	type text, source text, org_id uuid, user_ids uuid[], payloads jsonb[],
	dedupe_keys text[] DEFAULT NULL)
RETURNS TABLE (ord integer, outcome text, job_id uuid, run_at timestamptz, reason text)
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orch_submit_events';
COMMENT ON FUNCTION orch_submit_events(text, text, uuid, uuid[], jsonb[], text[]) IS
'Submits many events of one type and source for one org at once (user_ids[i], payloads[i], dedupe_keys[i]); each gets the outcome orch_submit_event would give it, in order; one row per event';
