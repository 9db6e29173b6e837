/*-------------------------------------------------------------------------
 *
 * entry.sql
 *	  Entry points: a trigger for webhook tables, a fan-out to every user with
 *	  a feature enabled, and pg_cron schedules.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/entry.sql
 *
 *-------------------------------------------------------------------------
 */

-- Entry points: webhook tables, fan-out, pg_cron schedules

/*
 * orch_enqueue_trigger: AFTER INSERT ... FOR EACH ROW EXECUTE FUNCTION
 * orch_enqueue_trigger('meeting_ended', 'webhook:meetingbaas'[, org column,
 * user column]).  The row, as jsonb, is the payload; the event is submitted
 * in the inserting transaction.  A row the engine cannot take (no org or
 * user, or a payload it refuses) is logged as skipped with the reason and
 * the row itself kept: the webhook's insert never fails because of it.
 */
CREATE FUNCTION orch_enqueue_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_row jsonb;
	v_org_col text := COALESCE(TG_ARGV[2], 'org_id');
	v_user_col text := COALESCE(TG_ARGV[3], 'user_id');
	v_org uuid;
	v_user uuid;
	v_msg text;
BEGIN
	IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP <> 'INSERT' THEN
		RAISE EXCEPTION 'orch_enqueue_trigger must be an AFTER INSERT ... FOR EACH ROW trigger'
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF TG_NARGS < 2 THEN
		RAISE EXCEPTION 'orch_enqueue_trigger needs the event type and source as arguments'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'EXECUTE FUNCTION orch_enqueue_trigger(''meeting_ended'', ''webhook:meetingbaas'').';
	END IF;
	v_row := orchestrator.without_transcripts(to_jsonb(NEW));
	IF NOT (v_row ? v_org_col) OR NOT (v_row ? v_user_col) THEN
		RAISE EXCEPTION 'table %.% has no column "%" or "%" for orch_enqueue_trigger', TG_TABLE_SCHEMA, TG_TABLE_NAME, v_org_col, v_user_col
			USING ERRCODE = 'undefined_column',
			      HINT = 'Name the org and user columns as the third and fourth trigger arguments.';
	END IF;
	BEGIN
		v_org := (v_row->>v_org_col)::uuid;
		v_user := (v_row->>v_user_col)::uuid;
		PERFORM @extschema@.orch_submit_event(TG_ARGV[0], TG_ARGV[1], v_org, v_user, v_row);
	EXCEPTION WHEN null_value_not_allowed OR invalid_parameter_value OR invalid_text_representation
	               OR program_limit_exceeded THEN
		-- masked: the message may quote the row (an email where a uuid was due)
		GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
		v_msg := orchestrator.redact(v_msg);
		RAISE WARNING 'orchestrator skipped a % row of %.%: %', TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME, v_msg;
		INSERT INTO orchestrator.event_log (org_id, user_id, event_type, event_source, outcome, reason, payload)
		VALUES (v_org, v_user, TG_ARGV[0], TG_ARGV[1], 'skipped', 'invalid_event: ' || v_msg,
		        CASE WHEN pg_column_size(v_row) <= 1048576 THEN v_row END);
	END;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION orch_enqueue_trigger() IS
'Trigger for webhook tables: AFTER INSERT FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger(event_type, source[, org_column, user_column]); submits the row as an event in the inserting transaction';

/*
 * orch_fan_out submits one event per user whose org has the event type
 * enabled (the scheduled sequences: morning brief, pipeline scan, campaign
 * check, coaching digest, pre-meeting prep), in one statement.  Each submit
 * runs the usual checks, so quiet hours defer and duplicates are refused.
 */
CREATE FUNCTION orch_fan_out(event_type text, source text, payload jsonb DEFAULT '{}')
RETURNS TABLE (outcome text, reason text, events bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.outcome, s.reason, count(*)
	FROM orchestrator.user_source u
	CROSS JOIN LATERAL @extschema@.orch_submit_event(orch_fan_out.event_type, orch_fan_out.source,
	                                                 u.org_id, u.id, orch_fan_out.payload) s
	WHERE COALESCE((SELECT bool_and(f.is_enabled) FROM orchestrator.feature_settings_source f
	                WHERE f.org_id = u.org_id AND f.feature_key = orch_fan_out.event_type), true)
	GROUP BY s.outcome, s.reason
	ORDER BY s.outcome, s.reason
$$;
COMMENT ON FUNCTION orch_fan_out(text, text, jsonb) IS
'Submits one event per user whose org has the event type enabled; returns how many of each outcome';

/*
 * orch_schedule runs orch_fan_out on a pg_cron schedule.  pg_cron is
 * optional: without it this fails with a hint, and nothing else needs it.
 */
CREATE FUNCTION orch_schedule(job_name text, schedule text, event_type text,
	source text DEFAULT NULL, payload jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_cmd text;
BEGIN
	IF job_name IS NULL OR schedule IS NULL OR event_type IS NULL OR payload IS NULL THEN
		RAISE EXCEPTION 'job_name, schedule, event_type and payload must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF to_regnamespace('cron') IS NULL OR to_regprocedure('cron.schedule(text,text,text)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron. Everything else in orchestrator works without it.';
	END IF;
	IF event_type !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
		RAISE EXCEPTION 'invalid event type "%"', event_type USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_cmd := format('SELECT * FROM %I.orch_fan_out(%L, %L, %L::jsonb)', '@extschema@', event_type,
	                COALESCE(source, 'cron:' || event_type), payload::text);
	RETURN cron.schedule('orch:' || job_name, schedule, v_cmd);
END
$$;
COMMENT ON FUNCTION orch_schedule(text, text, text, text, jsonb) IS
'Schedules a fan-out of event_type over pg_cron (job "orch:<job_name>"); returns the pg_cron job id';

CREATE FUNCTION orch_unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF job_name IS NULL THEN
		RAISE EXCEPTION 'job_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- pg_cron up to 1.4 takes the job's name as name, from 1.5 as text
	IF to_regnamespace('cron') IS NULL OR (to_regprocedure('cron.unschedule(name)') IS NULL
	                                       AND to_regprocedure('cron.unschedule(text)') IS NULL) THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM cron.job j WHERE j.jobname = 'orch:' || job_name) THEN
		RAISE EXCEPTION 'no orchestrator schedule named "%"', job_name USING ERRCODE = 'undefined_object';
	END IF;
	RETURN cron.unschedule(('orch:' || job_name)::name);
END
$$;
COMMENT ON FUNCTION orch_unschedule(text) IS 'Removes a schedule made with orch_schedule';
