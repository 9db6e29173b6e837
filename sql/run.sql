--
-- run: a sql sequence runs to completion in the worker; conditions, expect,
-- outputs, the seed's SequenceState and audit metadata, version pinning
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

CREATE TABLE public.action_items (job_id uuid, item text);

-- step 1 writes rows of its own and returns what it extracted
CREATE FUNCTION public.extract_action_items(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.action_items
	SELECT (state->'execution_metadata'->>'sequence_job_id')::uuid, i
	FROM jsonb_array_elements_text(state->'event'->'payload'->'items') AS i;
	RETURN jsonb_build_object('items', state->'event'->'payload'->'items',
	                          'count', jsonb_array_length(state->'event'->'payload'->'items'));
END $$;
-- step 2 sees step 1's output in the accumulated state
CREATE FUNCTION public.detect_intents(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('commitments', jsonb_build_array(jsonb_build_object(
		'speaker', 'rep', 'intent', 'send_proposal', 'confidence', 0.9,
		'based_on', state->'outputs'->'extract-action-items'->'count')))
$$;
-- step 3 only runs when a proposal was promised
CREATE FUNCTION public.never_called(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'this step should have been skipped'; END $$;
CREATE FUNCTION public.summarise(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('summary', format('%s items, steps so far: %s',
		state->'outputs'->'extract-action-items'->>'count', state->'steps_completed'))
$$;

SELECT orch_define_sequence('meeting_ended', $$[
  {"name": "extract-action-items", "kind": "sql", "function": "extract_action_items",
   "expect": "$.count > 0"},
  {"name": "detect-intents", "kind": "sql", "function": "detect_intents",
   "expect": "$.commitments[*] ? (@.confidence >= 0.8)"},
  {"name": "escalate", "kind": "sql", "function": "never_called",
   "condition": "$.outputs.\"detect-intents\".commitments[*] ? (@.intent == \"escalate\")"},
  {"name": "summarise", "kind": "sql", "function": "summarise",
   "condition": "$.outputs.\"detect-intents\".commitments[*] ? (@.speaker == \"rep\" && @.intent == \"send_proposal\" && @.confidence >= 0.8)"}
]$$);

SELECT job_id AS job FROM orch_submit_event('meeting_ended', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-1", "items": ["send deck", "book follow-up"]}') \gset
SELECT test_wait_job(:'job');

-- the state follows the seed's SequenceState
SELECT jsonb_pretty(context - 'started_at' - 'execution_metadata' - 'context') FROM orchestrator.sequence_jobs WHERE id = :'job';
SELECT jsonb_typeof(context->'started_at') AS started_at,
       context->'context'->'tier1'->'org'->>'name' AS tier1_org,
       context->'context'->'tier1'->'user'->>'display_name' AS tier1_user
FROM orchestrator.sequence_jobs WHERE id = :'job';
-- execution_metadata holds exactly the seed's audit fields, filled truthfully
SELECT array_agg(k ORDER BY k) FROM orchestrator.sequence_jobs, jsonb_object_keys(context->'execution_metadata') k WHERE id = :'job';
SELECT (m->>'sequence_job_id')::uuid = :'job' AS own_id, m->>'event_type' AS event_type, m->>'event_source' AS event_source,
       m->'steps_attempted' AS attempted, m->'steps_completed' AS completed, m->'steps_failed' AS failed,
       m->'approval_gates_hit' AS gates, m->'followups_queued' AS followups, m->'total_ai_cost' AS ai_cost,
       m->'chain_depth' AS depth, (m->>'total_duration_ms')::numeric > 0 AS has_duration
FROM (SELECT context->'execution_metadata' AS m FROM orchestrator.sequence_jobs WHERE id = :'job') s;
-- the step function's own writes committed with the step
SELECT item FROM public.action_items WHERE job_id = :'job' ORDER BY item;
-- one history row per step, in order; the skipped step is recorded as skipped
SELECT step_index, step_name, kind, attempt, outcome, output IS NOT NULL AS has_output, error
FROM orchestrator.step_history WHERE job_id = :'job' ORDER BY id;
-- the job row: completed, lease released, timestamps set
SELECT status, current_step, attempts, lease_owner, lease_expires_at, last_error,
       started_at IS NOT NULL AS started, finished_at >= started_at AS finished
FROM orchestrator.sequence_jobs WHERE id = :'job';
-- the timeline shows the submit, every step and the end, in order
SELECT entry, step, attempt FROM orch_job_timeline(:'job');
-- the operator views
SELECT status, step_count, current_step_name, age IS NOT NULL AS has_age FROM orchestrator.jobs WHERE id = :'job';
SELECT step_name, outcome, duration_ms >= 0 AS timed FROM orchestrator.steps WHERE job_id = :'job' ORDER BY id;
SELECT outcome, job_id = :'job' AS this_job FROM orchestrator.events WHERE job_id = :'job';
SELECT event_type, status, jobs FROM orchestrator.job_counts WHERE event_type = 'meeting_ended';

-- a job keeps the sequence version it started with
BEGIN;
SELECT job_id AS pinned FROM orch_submit_event('meeting_ended', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-2", "items": ["x"]}') \gset
SELECT orch_define_sequence('meeting_ended', '[{"name": "v2-only", "kind": "sql", "function": "summarise"}]');
COMMIT;
SELECT test_wait_job(:'pinned');
SELECT sequence_version, context->'steps_completed' AS steps FROM orchestrator.sequence_jobs WHERE id = :'pinned';
-- and a new job gets the new version
SELECT job_id AS v2 FROM orch_submit_event('meeting_ended', 'webhook:meetingbaas', :'org_a', :'ada',
	'{"meeting_id": "m-3", "items": ["y"]}') \gset
SELECT test_wait_job(:'v2');
SELECT sequence_version, context->'steps_completed' AS steps FROM orchestrator.sequence_jobs WHERE id = :'v2';

-- many jobs at once: all complete, each exactly once
SELECT orch_define_sequence('bulk', '[{"name": "one", "kind": "sql", "function": "extract_action_items"}]');
SELECT count(*) FROM generate_series(1, 200) g,
	LATERAL orch_submit_event('bulk', 'test:bulk', :'org_a', :'ada', jsonb_build_object('items', jsonb_build_array('bulk-' || g))) s
WHERE s.outcome = 'accepted';
SELECT test_wait_for($$SELECT count(*) = 200 FROM orchestrator.sequence_jobs WHERE event_type = 'bulk' AND status = 'completed'$$);
SELECT count(*) AS rows, count(DISTINCT item) AS distinct_items FROM public.action_items WHERE item LIKE 'bulk-%';
SELECT count(*) AS step_rows FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id WHERE j.event_type = 'bulk';

-- the runnable index holds only runnable jobs: after vacuum it is tiny while
-- the table holds hundreds of finished jobs (once no other session holds a
-- snapshot that could still see the finished jobs' old row versions)
SELECT test_wait_for($$SELECT count(*) = 0 FROM pg_stat_activity
	WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()$$);
VACUUM orchestrator.sequence_jobs;
SELECT (SELECT reltuples FROM pg_class WHERE oid = 'orchestrator.sequence_jobs_runnable'::regclass)
       <= (SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'pending') AS runnable_index_small,
       (SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'completed') >= 200 AS many_completed;
SELECT pg_get_indexdef('orchestrator.sequence_jobs_runnable'::regclass);
