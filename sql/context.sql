--
-- context: tier 1 always; tier 2 only when the payload names a contact or
-- deal; tier 3 only just before a step that requires it, never
-- speculatively.  Sources are definitions: a SQL function or an endpoint.
-- Transcripts are referenced by id, never copied into state.
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
SELECT standin('POST', '/_control/reset');

CREATE TABLE public.ctx_calls (source text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.crm_contact(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.ctx_calls (source) VALUES ('crm_contact');
	SELECT jsonb_build_object('contact', jsonb_build_object('id', state->'event'->'payload'->>'contact_id', 'name', 'Grace Hopper'),
	                          'sub', current_setting('request.jwt.claim.sub', true))
$$;
CREATE FUNCTION public.proposal_templates(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.ctx_calls (source) VALUES ('proposal_templates');
	SELECT '{"templates": ["saas-standard", "enterprise"]}'::jsonb
$$;
CREATE FUNCTION public.broken_source(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT 1 / 0 AS x; SELECT '{}'::jsonb
$$;
CREATE FUNCTION public.ctx_step(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('tiers', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(state->'context') k),
	                          'transcript', 'Rep: hello ... (the whole meeting)', 'summary', 'short')
$$;

-- definitions are validated
SELECT test_error($$SELECT orch_define_context_source('x', 1, 'crm_contact')$$);
SELECT test_error($$SELECT orch_define_context_source('x', 3)$$);
SELECT test_error($$SELECT orch_define_context_source('x', 3, 'crm_contact', 'slack')$$);
SELECT test_error($$SELECT orch_define_context_source('x', 3, 'no_such_fn')$$);
SELECT test_error($$SELECT orch_define_context_source('x', 3, NULL, 'no_such_endpoint')$$);
SELECT test_error($$SELECT orch_define_context_source('bad name', 3, 'crm_contact')$$);

SELECT orch_define_context_source('crm', 2, 'crm_contact', description => 'CRM contact, company, deal');
SELECT orch_define_context_source('proposal_templates', 3, 'proposal_templates');
SELECT orch_define_context_source('flaky_news', 3, 'broken_source');
SELECT orch_define_endpoint('apollo-enrichment', current_setting('test.standin') || '/functions/v1/apollo-enrichment');
SELECT orch_define_context_source('apollo', 3, NULL, 'apollo-enrichment');
SELECT name, tier, function, endpoint, created_by FROM orchestrator.context_sources ORDER BY name;

SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "ctx_step", "requires_context": ["crm"]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "ctx_step", "requires_context": "apollo"}]')$$);

SELECT orch_define_sequence('ctx_flow', '[
  {"name": "first", "kind": "sql", "function": "ctx_step"},
  {"name": "generate-proposal", "kind": "sql", "function": "ctx_step",
   "requires_context": ["proposal_templates", "apollo", "flaky_news"],
   "condition": "$.event.payload.propose == true"}]');

-- no contact, no requiring step run: only tier 1, and no source is touched
SELECT job_id AS j1 FROM orch_submit_event('ctx_flow', 'webhook:calendar', :'org_a', :'ada',
	'{"propose": false, "meeting_id": "m-1", "transcript": "Rep: secret pricing talk"}') \gset
SELECT test_wait_job(:'j1');
SELECT jsonb_object_keys(context->'context') AS loaded FROM orchestrator.sequence_jobs WHERE id = :'j1';
SELECT count(*) AS source_calls FROM public.ctx_calls;
SELECT count(*) AS apollo_requests FROM standin_requests('/functions/v1/apollo-enrichment');
-- the transcript given in the payload is in neither the state, the trigger payload nor the history
SELECT context->'event'->'payload' AS payload_in_state, trigger_payload,
       context::text LIKE '%secret pricing%' OR trigger_payload::text LIKE '%secret pricing%' AS transcript_stored
FROM orchestrator.sequence_jobs WHERE id = :'j1';
SELECT context->'outputs'->'first' AS first_output FROM orchestrator.sequence_jobs WHERE id = :'j1';
SELECT count(*) AS history_with_transcript FROM orchestrator.step_history
WHERE job_id = :'j1' AND output::text LIKE '%the whole meeting%';

-- a contact: tier 2 is loaded, once, user-scoped; still no tier 3
SELECT job_id AS j2 FROM orch_submit_event('ctx_flow', 'webhook:calendar', :'org_a', :'ada',
	'{"propose": false, "contact_id": "c-42"}') \gset
SELECT test_wait_job(:'j2');
SELECT context->'context'->'tier2'->'crm'->'contact'->>'name' AS contact,
       context->'context'->'tier2'->'crm'->>'sub' = :'ada' AS user_scoped,
       context->'context' ? 'tier3' AS tier3_loaded,
       context->'outputs'->'first'->'tiers' AS tiers_seen
FROM orchestrator.sequence_jobs WHERE id = :'j2';
SELECT source, count(*) FROM public.ctx_calls GROUP BY source ORDER BY source;

-- the step that requires tier 3 gets it, loaded just before it: a function,
-- an endpoint (the job parks on it like an http step), and one that fails,
-- which is recorded and does not stop the step
SELECT job_id AS j3 FROM orch_submit_event('ctx_flow', 'webhook:calendar', :'org_a', :'ada',
	'{"propose": true, "deal_id": "d-7"}') \gset
SELECT test_wait_job(:'j3');
SELECT context->'context'->'tier3'->'proposal_templates'->'templates' AS templates,
       jsonb_typeof(context->'context'->'tier3'->'apollo') AS apollo_answer,
       context->'context'->'tier3'->'flaky_news' AS flaky,
       context->'context'->'errors'->>'flaky_news' AS flaky_error,
       context->'outputs'->'generate-proposal'->'tiers' AS tiers_seen
FROM orchestrator.sequence_jobs WHERE id = :'j3';
SELECT step_name, kind, outcome, output->>'tier' AS tier, error FROM orchestrator.step_history
WHERE job_id = :'j3' ORDER BY id;
-- the endpoint got the state and its own Idempotency-Key
SELECT r->'body'->>'step' AS step, r->'headers'->>'idempotency-key' LIKE 'orch-%-1-context-apollo' AS key_is_its_own
FROM standin_requests('/functions/v1/apollo-enrichment') r;
SELECT source, count(*) FROM public.ctx_calls GROUP BY source ORDER BY source;

-- an endpoint source whose request cannot even be built (a secret that is
-- not set) is that source's failure: recorded, and the step still runs
SELECT orch_define_endpoint('news-feed', current_setting('test.standin') || '/functions/v1/news',
	5000, '{"X-Api-Key": "{{secret:news_key_never_set}}"}');
SELECT orch_define_context_source('company_news', 3, NULL, 'news-feed');
SELECT orch_define_sequence('ctx_news', '[{"name": "brief", "kind": "sql", "function": "ctx_step", "requires_context": ["company_news"]}]');
SELECT job_id AS j4 FROM orch_submit_event('ctx_news', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'j4');
SELECT status, context->'context'->'tier3' AS tier3, context->'context'->'errors'->>'company_news' AS error
FROM orchestrator.sequence_jobs WHERE id = :'j4';
SELECT count(*) AS news_requests FROM standin_requests('/functions/v1/news');

-- transcript text is dropped at any depth: payloads, outputs, context
CREATE FUNCTION public.nested_transcript(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT '{"meeting": {"id": "m-9", "transcript": "Rep: the whole call", "parts": [{"transcript_text": "more"}, {"n": 1}]}}'::jsonb
$$;
SELECT orch_define_sequence('ctx_nested', '[{"name": "n", "kind": "sql", "function": "nested_transcript"}]');
SELECT job_id AS j5 FROM orch_submit_event('ctx_nested', 'test', :'org_a', :'ada',
	'{"meeting": {"id": "m-9", "transcript_id": "t-9", "transcript": "Grace: private words"}}') \gset
SELECT test_wait_job(:'j5');
SELECT context->'event'->'payload' AS payload, context->'outputs'->'n' AS output
FROM orchestrator.sequence_jobs WHERE id = :'j5';
SELECT count(*) AS rows_with_transcript_text FROM orchestrator.step_history
WHERE job_id = :'j5' AND (output::text LIKE '%whole call%' OR output::text LIKE '%more%');
