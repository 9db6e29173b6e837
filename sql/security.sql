--
-- security: steps run as the role that defined the sequence, never as the
-- worker's superuser; roles; what PUBLIC and the admin role may do
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

CREATE ROLE test_definer IN ROLE orchestrator_admin;
CREATE FUNCTION public.whoami(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('current_user', current_user, 'session_is_super',
                                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) $$;
CREATE FUNCTION public.escalate(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'ALTER ROLE test_definer SUPERUSER';
	RETURN '{}';
END $$;
CREATE FUNCTION public.private_fn(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
REVOKE ALL ON FUNCTION public.private_fn(jsonb) FROM PUBLIC;
ALTER FUNCTION public.escalate(jsonb) OWNER TO test_definer;

-- the admin role defines sequences; their steps run as that role
SET ROLE test_definer;
SELECT orch_define_sequence('sec_whoami', '[{"name": "who", "kind": "sql", "function": "whoami"}]');
SELECT orch_define_sequence('sec_escalate', '[{"name": "grab", "kind": "sql", "function": "escalate"}]');
SELECT orch_define_sequence('sec_private', '[{"name": "p", "kind": "sql", "function": "private_fn"}]');
-- the admin role writes settings (the timezone check runs with its privileges)
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone)
VALUES ('00000000-0000-0000-0000-0000000000a3', :'org_a', 'Europe/Berlin');
DELETE FROM orchestrator.slack_user_preferences WHERE user_id = '00000000-0000-0000-0000-0000000000a3';
-- nor write definitions directly, nor choose the role they run as
SELECT test_error($$INSERT INTO orchestrator.sequence_definitions (event_type, version, steps, created_by) VALUES ('evil', 1, '[]', 'postgres')$$);
SELECT orchestrator.store_sequence('sec_direct', '[{"name": "who", "kind": "sql", "function": "public.whoami"}]');
SELECT created_by FROM orchestrator.sequence_definitions WHERE event_type = 'sec_direct';
-- but cannot repoint the engine at other tables
SELECT test_error($$SELECT orch_use_table('orgs', 'pg_catalog.pg_authid', '{"id": "oid"}')$$);
RESET ROLE;

SELECT job_id AS w FROM orch_submit_event('sec_whoami', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'w');
SELECT context->'outputs'->'who' AS who FROM orchestrator.sequence_jobs WHERE id = :'w';

-- a step cannot do what its definer could not: no escalation through the superuser worker
SELECT job_id AS e FROM orch_submit_event('sec_escalate', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'e');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'e';
SELECT rolsuper FROM pg_roles WHERE rolname = 'test_definer';

-- nor call a function its definer may not execute
SELECT job_id AS p FROM orch_submit_event('sec_private', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'p');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'p';

-- a step's role leaves no trace on the worker: the next job runs as its own definer
SELECT orch_define_sequence('sec_super', '[{"name": "who", "kind": "sql", "function": "whoami"}]');
SELECT job_id AS s FROM orch_submit_event('sec_super', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'s');
SELECT context->'outputs'->'who'->>'current_user' = current_user AS ran_as_superuser_definer FROM orchestrator.sequence_jobs WHERE id = :'s';

-- a step cannot define sequences: inside the worker the outer role is not its caller
CREATE FUNCTION public.define_from_step(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orch_define_sequence('sec_smuggled', '[{"name": "who", "kind": "sql", "function": "public.whoami"}]');
	RETURN '{}';
END $$;
ALTER FUNCTION public.define_from_step(jsonb) OWNER TO test_definer;
SET ROLE test_definer;
SELECT orch_define_sequence('sec_define_in_step', '[{"name": "d", "kind": "sql", "function": "define_from_step"}]');
RESET ROLE;
SELECT job_id AS ds FROM orch_submit_event('sec_define_in_step', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'ds');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'ds';
SELECT count(*) AS smuggled FROM orchestrator.sequence_definitions WHERE event_type = 'sec_smuggled';

-- a definer that no longer exists fails the job with a clear error
CREATE ROLE test_gone IN ROLE orchestrator_admin;
GRANT EXECUTE ON FUNCTION public.whoami(jsonb) TO test_gone;
SET ROLE test_gone;
SELECT orch_define_sequence('sec_gone', '[{"name": "who", "kind": "sql", "function": "whoami"}]');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION public.whoami(jsonb) FROM test_gone;
DROP ROLE test_gone;
SELECT job_id AS g FROM orch_submit_event('sec_gone', 'test:security', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'g');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'g';

-- PUBLIC gets nothing: no table, no API function
SELECT count(*) AS public_table_grants FROM information_schema.role_table_grants
WHERE table_schema = 'orchestrator' AND grantee = 'PUBLIC';
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname = 'orchestrator' OR p.proname LIKE 'orch\_%') AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY 1;
-- every SECURITY DEFINER function pins its search_path
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname = 'orchestrator' OR p.proname LIKE 'orch\_%') AND p.prosecdef
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
ORDER BY 1;
-- every table, view and function the extension made has a comment
SELECT classid::regclass, objid, pg_describe_object(classid, objid, 0) FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orchestrator')
  AND d.classid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_namespace'::regclass)
  AND obj_description(d.objid, d.classid::regclass::text) IS NULL
  AND NOT (d.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('S', 'i'));
