--
-- cost: steps marked "ai" are checked against the org's budget before they
-- run; over it, the whole sequence halts and the seed's Slack notice goes
-- out once per org and billing period; costs go to the ledger and the audit
--
\set org_c '00000000-0000-0000-0000-00000000000c'
\set cara '00000000-0000-0000-0000-0000000000c1'
SELECT standin('POST', '/_control/reset');
INSERT INTO orchestrator.orgs (id, name) VALUES (:'org_c', 'Frugal Inc');
INSERT INTO orchestrator.users (id, org_id, display_name) VALUES (:'cara', :'org_c', 'Cara');
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id) VALUES (:'cara', :'org_c', 'U0CARA');
INSERT INTO orchestrator.cost_budgets (org_id, monthly_budget_usd) VALUES (:'org_c', 1.00);

CREATE TABLE public.cost_trace (job_id uuid, step text);
CREATE FUNCTION public.prepare(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.cost_trace VALUES ((state->'execution_metadata'->>'sequence_job_id')::uuid, 'prepare');
	SELECT '{"ready": true}'::jsonb $$;
CREATE FUNCTION public.summarise_with_llm(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.cost_trace VALUES ((state->'execution_metadata'->>'sequence_job_id')::uuid, 'llm');
	SELECT '{"summary": "three action items", "cost_usd": 0.40}'::jsonb $$;
CREATE FUNCTION public.after_llm(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.cost_trace VALUES ((state->'execution_metadata'->>'sequence_job_id')::uuid, 'after');
	SELECT '{"done": true}'::jsonb $$;
SELECT orch_define_sequence('cost_flow', '[
  {"name": "prepare", "kind": "sql", "function": "prepare"},
  {"name": "summarise", "kind": "sql", "function": "summarise_with_llm", "ai": true, "on_failure": "continue"},
  {"name": "after", "kind": "sql", "function": "after_llm"}]');

-- within budget: the ai step runs and its cost is booked and counted
SELECT job_id AS c1 FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 1}') \gset
SELECT test_wait_job(:'c1');
SELECT status, context->'cost_accumulated' AS cost_accumulated, context->'execution_metadata'->'total_ai_cost' AS total_ai_cost
FROM orchestrator.sequence_jobs WHERE id = :'c1';
SELECT step_name, cost_usd FROM orchestrator.cost_ledger WHERE job_id = :'c1';
SELECT job_id AS c2 FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 2}') \gset
SELECT test_wait_job(:'c2');
SELECT job_id AS c3 FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 3}') \gset
SELECT test_wait_job(:'c3');
SELECT sum(cost_usd) AS spent, orchestrator.budget_exceeded(:'org_c') AS over_budget FROM orchestrator.cost_ledger WHERE org_id = :'org_c';

-- over budget (a job accepted before the budget ran out): the ai step never
-- runs, the whole sequence halts at once whatever its on_failure says
DELETE FROM orchestrator.cost_ledger WHERE job_id = :'c3';
BEGIN;
SELECT job_id AS c4 FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 4}') \gset
SELECT job_id AS c5 FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 5}') \gset
INSERT INTO orchestrator.cost_ledger (org_id, step_name, cost_usd) VALUES (:'org_c', 'elsewhere', 0.40);
COMMIT;
SELECT test_wait_job(:'c4');
SELECT test_wait_job(:'c5');
SELECT status, last_error, current_step FROM orchestrator.sequence_jobs WHERE id IN (:'c4', :'c5');
SELECT step FROM public.cost_trace WHERE job_id = :'c4' ORDER BY step;
SELECT step_name, outcome, error FROM orchestrator.step_history WHERE job_id = :'c4' ORDER BY id;

-- the seed's notice went out once for the org and period, not once per job
SELECT count(*) AS notices, bool_and(job_id IN (:'c4', :'c5')) AS for_a_halted_job FROM orchestrator.budget_notices WHERE org_id = :'org_c';
SELECT test_wait_for($$SELECT count(*) = 1 FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:budget_notice' AND status = 'completed'$$);
SELECT event_source, status FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:budget_notice';
SELECT r->'body'->>'channel' AS channel, r->'body'->>'text' AS text
FROM standin_requests('/api/chat.postMessage') r;
-- new events for the org are refused at submit with the reason
SELECT outcome, reason FROM orch_submit_event('cost_flow', 'test:cost', :'org_c', :'cara', '{"n": 6}');
-- a negative reported cost is an error of the step
CREATE FUNCTION public.refund(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"cost_usd": -1}'::jsonb $$;
SELECT orch_define_sequence('cost_negative', '[{"name": "refund", "kind": "sql", "function": "refund", "ai": true,
  "followups": [{"type": "cost_negative", "payload": {"again": true}}]}]');
DELETE FROM orchestrator.cost_ledger WHERE org_id = :'org_c';
SELECT job_id AS cn FROM orch_submit_event('cost_negative', 'test:cost', :'org_c', :'cara', '{}') \gset
SELECT test_wait_job(:'cn');
SELECT status, last_error FROM orchestrator.sequence_jobs WHERE id = :'cn';
-- the follow-up it queued was rolled back with it, and is not counted
SELECT context->'execution_metadata'->'followups_queued' AS counted, context->'queued_followups' AS queued,
       (SELECT count(*) FROM orchestrator.sequence_jobs c WHERE c.parent_job_id = j.id) AS children
FROM orchestrator.sequence_jobs j WHERE id = :'cn';
