--
-- setup: the extension, the workers it needs, and helpers the other tests use
--
CREATE EXTENSION orchestrator;

-- test_wait_for polls a boolean query until it is true, or fails after a deadline
CREATE FUNCTION test_wait_for(cond text, timeout_s float8 DEFAULT 60) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
	ok boolean;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		EXECUTE cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'timed out after % s waiting for: %', timeout_s, cond;
		END IF;
		PERFORM pg_sleep(0.01);  -- poll until the condition holds or the deadline passes
	END LOOP;
END
$$;

-- test_wait_job waits until a job reaches one of the given statuses
CREATE FUNCTION test_wait_job(job uuid, statuses text[] DEFAULT '{completed,failed}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM test_wait_for(format('SELECT status = ANY (%L) FROM orchestrator.sequence_jobs WHERE id = %L',
	                             statuses, job));
	RETURN (SELECT status FROM orchestrator.sequence_jobs WHERE id = job);
END
$$;

-- test_error runs a statement and shows the SQLSTATE, message (uuids masked) and hint it raised
CREATE FUNCTION test_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; hint text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || regexp_replace(msg, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g')
	       || CASE WHEN hint <> '' THEN ' | HINT: ' || hint ELSE '' END;
END
$$;

-- both workers are connected to this database and idle on their latch
SELECT test_wait_for($$SELECT count(*) = 2 FROM pg_stat_activity
                      WHERE backend_type = 'orchestrator worker' AND datname = current_database()$$);
SELECT orchestrator.workers_preloaded();

-- fixtures: two orgs, users, one with preferences
INSERT INTO orchestrator.orgs (id, name) VALUES
	('00000000-0000-0000-0000-00000000000a', 'Acme'),
	('00000000-0000-0000-0000-00000000000b', 'Budgetless');
INSERT INTO orchestrator.users (id, org_id, display_name) VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Ada'),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'Quiet Quincy'),
	('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-00000000000b', 'Bob');
\set org_a '00000000-0000-0000-0000-00000000000a'
\set org_b '00000000-0000-0000-0000-00000000000b'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'
\set bob '00000000-0000-0000-0000-0000000000b1'
