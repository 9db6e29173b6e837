--
-- scope: a user-scoped sql step (the default) runs with request.jwt.claims
-- naming the job's user, so RLS policies written for PostgREST apply; a
-- service-scope step runs without them and every attempt is audited.
-- PostgREST callers act only for their own user (see approval for resolve).
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'

CREATE ROLE scope_definer;
GRANT orchestrator_admin TO scope_definer;
CREATE TABLE public.deals (id int PRIMARY KEY, user_id uuid NOT NULL, name text NOT NULL);
ALTER TABLE public.deals ENABLE ROW LEVEL SECURITY;
CREATE POLICY deals_own ON public.deals
	USING (user_id = (NULLIF(current_setting('request.jwt.claims', true), '')::jsonb->>'sub')::uuid);
GRANT SELECT ON public.deals TO scope_definer;
INSERT INTO public.deals VALUES (1, :'ada', 'Globex'), (2, :'ada', 'Initech'), (3, :'quincy', 'Umbrella');

CREATE FUNCTION public.my_deals(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'deals', COALESCE((SELECT jsonb_agg(name ORDER BY id) FROM public.deals), '[]'),
		'who', current_user,
		'claims', NULLIF(current_setting('request.jwt.claims', true), '')::jsonb - 'aud',
		'sub', current_setting('request.jwt.claim.sub', true))
$$;
GRANT EXECUTE ON FUNCTION public.my_deals(jsonb) TO scope_definer;

SET ROLE scope_definer;
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "my_deals", "scope": "root"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "http", "endpoint": "slack", "scope": "service"}]')$$);
SELECT orch_define_sequence('scope_test', '[
  {"name": "mine", "kind": "sql", "function": "my_deals"},
  {"name": "org-wide", "kind": "sql", "function": "my_deals", "scope": "service"}]');
RESET ROLE;

SELECT job_id AS ja FROM orch_submit_event('scope_test', 'cron:pipeline_scan', :'org_a', :'ada') \gset
SELECT job_id AS jq FROM orch_submit_event('scope_test', 'cron:pipeline_scan', :'org_a', :'quincy') \gset
SELECT test_wait_job(:'ja'), test_wait_job(:'jq');
-- each user's step saw that user's deals only, as the definer, with the user's claims
SELECT j.user_id = :'ada' AS is_ada, o->'deals' AS deals, o->>'who' AS who,
       o->'claims'->>'sub' = j.user_id::text AS claims_sub, o->'claims'->>'org_id' = :'org_a' AS claims_org,
       o->>'sub' = j.user_id::text AS legacy_sub
FROM orchestrator.sequence_jobs j, LATERAL (SELECT j.context->'outputs'->'mine' AS o) x
WHERE j.id IN (:'ja', :'jq') ORDER BY 1 DESC;
-- the service step ran without user claims (no user's rows through this policy),
-- in the same worker session right after the user step: its claims did not linger
SELECT context->'outputs'->'org-wide'->'deals' AS deals, context->'outputs'->'org-wide'->'claims' AS claims
FROM orchestrator.sequence_jobs WHERE id = :'ja';
-- and it is audited, attempt by attempt; user-scoped steps are recorded as such
SELECT step_name, scope FROM orchestrator.step_history WHERE job_id = :'ja' ORDER BY id;
SELECT step_name, outcome, run_as, event_source, user_id = :'ada' AS ada
FROM orchestrator.service_scope_audit WHERE job_id = :'ja';
DROP TABLE public.deals;
