--
-- fanout: fan_out steps with the workers running.  A child job per item,
-- their outputs collected in the list's order; an empty list; fail fast
-- (the others cancelled) and collect (every child reported); children
-- obey the chain depth; every bad definition.
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

CREATE FUNCTION public.fan_enrich(state jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF state->'event'->'payload'->'contact'->>'name' = 'Mallory' THEN
		RAISE EXCEPTION 'no data for Mallory';
	END IF;
	RETURN jsonb_build_object('title', upper(state->'event'->'payload'->'contact'->>'name'),
	                          'deal', state->'event'->'payload'->>'deal');
END $$;
CREATE FUNCTION public.fan_contacts(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('contacts', state->'event'->'payload'->'contacts') $$;
CREATE FUNCTION public.fan_summary(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('titles', (SELECT jsonb_agg(r->'outputs'->'enrich'->'title')
	                                     FROM jsonb_array_elements(state->'outputs'->'fan'->'results') r))
$$;
SELECT orch_define_sequence('fan_child', '[{"name": "enrich", "kind": "sql", "function": "fan_enrich"}]');
SELECT orch_define_sequence('fan_child_slow', '[
  {"name": "hold", "kind": "signal", "signal": "never"},
  {"name": "enrich", "kind": "sql", "function": "fan_enrich"}]');

-- bad definitions
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "for_each": "$.x[*]"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "sequence": "nope", "for_each": "$.x[*]"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "sequence": "orchestrator:failure_notice", "for_each": "$.x[*]"}]')$$);
SELECT test_error($q$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "sequence": "fan_child", "for_each": "$$$"}]')$q$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "sequence": "fan_child", "for_each": "$.x[*]", "payload": [1]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "fan_out", "sequence": "fan_child", "for_each": "$.x[*]", "on_child_failure": "ignore"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "f", "kind": "sql", "function": "fan_enrich", "sequence": "fan_child"}]')$$);

-- fan out over the contacts a step found, then a step that sees every
-- child's output, in the list's order
SELECT orch_define_sequence('fan_collect', '[
  {"name": "find", "kind": "sql", "function": "fan_contacts"},
  {"name": "fan", "kind": "fan_out", "sequence": "fan_child", "for_each": "$.outputs.find.contacts[*]",
   "payload": {"contact": "@", "deal": "$.event.payload.deal"}, "on_child_failure": "collect"},
  {"name": "summary", "kind": "sql", "function": "fan_summary"}]');
SELECT job_id AS parent FROM orch_submit_event('fan_collect', 'test', :'org_a', :'ada',
	'{"deal": "Globex", "contacts": [{"name": "ann"}, {"name": "bob"}, {"name": "cy"}]}') \gset
SELECT test_wait_job(:'parent');
SELECT context->'outputs'->'summary' AS summary,
       context->'outputs'->'fan'->'completed' AS completed, context->'outputs'->'fan'->'failed' AS failed
FROM orchestrator.sequence_jobs WHERE id = :'parent';
-- each child is a job of the child sequence, a follow-up of the parent one level deeper
SELECT c.ord, j.status, j.chain_depth, j.parent_job_id = :'parent' AS linked, j.event_source,
       j.trigger_payload->'contact'->>'name' AS contact
FROM orchestrator.fan_children c JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
WHERE c.job_id = :'parent' ORDER BY c.ord;
-- the parent waited without a worker, woken as children ended; no attempt was spent waiting
SELECT (context->'execution_metadata'->>'steps_attempted')::int AS attempted,
       (SELECT count(*) > 0 FROM orchestrator.step_history h WHERE h.job_id = :'parent' AND h.outcome = 'deferred'
          AND h.error LIKE 'waiting for % of 3 child jobs of sequence "fan_child"') AS waited
FROM orchestrator.sequence_jobs WHERE id = :'parent';

-- an empty list: nothing to wait for
SELECT job_id AS empty FROM orch_submit_event('fan_collect', 'test', :'org_a', :'ada', '{"deal": "x", "contacts": []}') \gset
SELECT test_wait_job(:'empty');
SELECT context->'outputs'->'fan' AS fan FROM orchestrator.sequence_jobs WHERE id = :'empty';

-- collect: a failing child is reported, the others still run
SELECT job_id AS mixed FROM orch_submit_event('fan_collect', 'test', :'org_a', :'ada',
	'{"deal": "Initech", "contacts": [{"name": "dee"}, {"name": "Mallory"}, {"name": "eve"}]}') \gset
SELECT test_wait_job(:'mixed');
SELECT r->>'status' AS status, r->'outputs'->'enrich'->>'title' AS title, r->>'error' AS error
FROM orchestrator.sequence_jobs j, jsonb_array_elements(j.context->'outputs'->'fan'->'results') r
WHERE j.id = :'mixed';

-- fail fast: the first child that fails fails the step, and the children
-- still running are cancelled
SELECT orch_define_sequence('fan_fast', '[
  {"name": "fan", "kind": "fan_out", "sequence": "fan_child_slow", "for_each": "$.event.payload.contacts[*]",
   "payload": {"contact": "@"}},
  {"name": "never", "kind": "sql", "function": "fan_summary"}]');
SELECT job_id AS fast FROM orch_submit_event('fan_fast', 'test', :'org_a', :'ada',
	'{"contacts": [{"name": "fay"}, {"name": "Mallory"}, {"name": "gus"}]}') \gset
SELECT test_wait_for($$SELECT count(*) = 3 FROM orchestrator.waits w JOIN orchestrator.fan_children c ON c.child_id = w.job_id
                       WHERE c.job_id = '$$ || :'fast' || $$'$$);
SELECT orch_signal(c.child_id, 'never') IS NOT NULL AS released
FROM orchestrator.fan_children c WHERE c.job_id = :'fast' AND c.ord = 2;
SELECT test_wait_job(:'fast');
SELECT regexp_replace(last_error, '[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>') AS error, current_step
FROM orchestrator.sequence_jobs WHERE id = :'fast';
SELECT c.ord, j.status FROM orchestrator.fan_children c JOIN orchestrator.sequence_jobs j ON j.id = c.child_id
WHERE c.job_id = :'fast' ORDER BY c.ord;
SELECT count(*) AS waits_left FROM orchestrator.waits;

-- children obey the chain depth: a sequence that fans out to itself stops
-- at depth 3, and the refused level fails the chain from the bottom up
SELECT orch_define_sequence('fan_self', '[{"name": "noop", "kind": "sql", "function": "fan_contacts"}]');
SELECT orch_define_sequence('fan_self', '[{"name": "fan", "kind": "fan_out", "sequence": "fan_self",
  "for_each": "$.event.payload.next[*]", "payload": {"next": "@"}}]');
SELECT job_id AS deep FROM orch_submit_event('fan_self', 'test', :'org_a', :'ada', '{"next": [[[[1]]]]}') \gset
SELECT test_wait_job(:'deep');
SELECT j.chain_depth, j.status, regexp_replace(j.last_error, '[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>', 'g') AS error
FROM orchestrator.sequence_jobs j WHERE j.event_type = 'fan_self' ORDER BY j.chain_depth;
SELECT outcome, reason FROM orchestrator.event_log WHERE event_type = 'fan_self' AND outcome = 'skipped';

-- children obey the budget: an org over its AI budget gets them refused
\set org_d '00000000-0000-0000-0000-00000000000d'
\set dora '00000000-0000-0000-0000-0000000000d1'
INSERT INTO orchestrator.orgs (id, name) VALUES (:'org_d', 'Spent Ltd');
INSERT INTO orchestrator.users (id, org_id, display_name) VALUES (:'dora', :'org_d', 'Dora');
INSERT INTO orchestrator.cost_budgets (org_id, monthly_budget_usd) VALUES (:'org_d', 1.00);
BEGIN;
SELECT job_id AS spent FROM orch_submit_event('fan_collect', 'test', :'org_d', :'dora',
	'{"deal": "x", "contacts": [{"name": "hal"}, {"name": "ivy"}]}') \gset
INSERT INTO orchestrator.cost_ledger (org_id, step_name, cost_usd) VALUES (:'org_d', 'earlier usage', 1.00);
COMMIT;
SELECT test_wait_job(:'spent');
SELECT r->>'status' AS status, r->>'error' AS error
FROM orchestrator.sequence_jobs j, jsonb_array_elements(j.context->'outputs'->'fan'->'results') r
WHERE j.id = :'spent';
SELECT count(*) AS children FROM orchestrator.sequence_jobs WHERE parent_job_id = :'spent';
DELETE FROM orchestrator.cost_budgets WHERE org_id = :'org_d';
