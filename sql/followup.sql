--
-- followup: steps queue follow-up events (the seed's detect-intents ->
-- proposal_generation), linked both ways, in the step's transaction, at
-- most three deep
--
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'

-- detect-intents finds commitments; only the rep's confident proposal promise chains
CREATE FUNCTION public.fu_detect_intents(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT '{"commitments": [
		{"speaker": "rep", "intent": "send_proposal", "confidence": 0.92, "phrase": "I will send you a proposal by Friday"},
		{"speaker": "rep", "intent": "send_proposal", "confidence": 0.5, "phrase": "maybe a proposal"},
		{"speaker": "prospect", "intent": "send_proposal", "confidence": 0.95, "phrase": "send us your proposal"},
		{"speaker": "rep", "intent": "book_meeting", "confidence": 0.9, "phrase": "let us meet Tuesday"}]}'::jsonb
$$;
CREATE FUNCTION public.fu_generate(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('proposal_for', state->'event'->'payload'->>'meeting_id', 'phrase', state->'event'->'payload'->>'trigger_phrase') $$;
CREATE FUNCTION public.fu_pass(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('depth', state->'execution_metadata'->'chain_depth') $$;

SELECT orch_define_sequence('fu_meeting_ended', $$[
  {"name": "detect-intents", "kind": "sql", "function": "fu_detect_intents",
   "followups": [{"type": "fu_proposal_generation",
                  "for_each": "$.outputs.\"detect-intents\".commitments[*] ? (@.speaker == \"rep\" && @.intent == \"send_proposal\" && @.confidence >= 0.8)",
                  "payload": {"meeting_id": "$.event.payload.meeting_id", "trigger_phrase": "@.phrase", "fixed": 7}}]}]$$);
-- proposal_generation chains an email draft, which chains a further step: the fourth level is refused
SELECT orch_define_sequence('fu_proposal_generation', $$[
  {"name": "generate-proposal", "kind": "sql", "function": "fu_generate",
   "followups": [{"type": "fu_email_draft", "payload": {"meeting_id": "$.event.payload.meeting_id"}}]}]$$);
SELECT orch_define_sequence('fu_email_draft', $$[
  {"name": "draft", "kind": "sql", "function": "fu_pass",
   "followups": [{"type": "fu_too_deep", "payload": {"meeting_id": "$.event.payload.meeting_id"}}]}]$$);
SELECT orch_define_sequence('fu_too_deep', '[{"name": "never", "kind": "sql", "function": "fu_pass"}]');

SELECT job_id AS root FROM orch_submit_event('fu_meeting_ended', 'webhook:meetingbaas', :'org_a', :'ada', '{"meeting_id": "m-fu"}') \gset
SELECT test_wait_for($$SELECT count(*) = 3 FROM orchestrator.sequence_jobs
                      WHERE event_type LIKE 'fu\_%' AND status = 'completed'$$);
SELECT test_wait_for($$SELECT EXISTS (SELECT 1 FROM orchestrator.event_log WHERE event_type = 'fu_too_deep')$$);

-- one chain of three jobs, linked both ways, depth 1, 2, 3
SELECT j.event_type, j.chain_depth, j.event_source, j.status,
       p.event_type AS parent, jsonb_array_length(j.event_chain->'children') AS children,
       j.event_chain->>'parent' = p.id::text AS parent_in_chain,
       (p.event_chain->'children') ? j.id::text AS listed_by_parent
FROM orchestrator.sequence_jobs j LEFT JOIN orchestrator.sequence_jobs p ON p.id = j.parent_job_id
WHERE j.event_type LIKE 'fu\_%' ORDER BY j.chain_depth;
-- the follow-up's payload: from the state ($) and from the selected item (@)
SELECT trigger_payload FROM orchestrator.sequence_jobs WHERE event_type = 'fu_proposal_generation';
SELECT context->'outputs'->'generate-proposal' AS proposal FROM orchestrator.sequence_jobs WHERE event_type = 'fu_proposal_generation';
-- the parent's state records what it queued, and its audit counts it
SELECT jsonb_array_length(context->'queued_followups') AS queued, context->'queued_followups'->0->>'outcome' AS outcome,
       context->'queued_followups'->0->>'type' AS type, context->'execution_metadata'->'followups_queued' AS followups_queued
FROM orchestrator.sequence_jobs WHERE id = :'root';
-- the fourth level created nothing, was logged, and its parent still completed
SELECT outcome, reason FROM orchestrator.event_log WHERE event_type = 'fu_too_deep';
SELECT count(*) AS too_deep_jobs FROM orchestrator.sequence_jobs WHERE event_type = 'fu_too_deep';
SELECT status, context->'queued_followups'->0->>'outcome' AS outcome, context->'execution_metadata'->'followups_queued' AS counted
FROM orchestrator.sequence_jobs WHERE event_type = 'fu_email_draft';
-- the timelines show what each job queued, and what was refused
SELECT entry, step, detail ? 'job_id' AS has_job FROM orch_job_timeline(:'root') WHERE entry LIKE 'follow-up%';
SELECT t.entry, t.step, t.detail->>'reason' AS reason
FROM orchestrator.sequence_jobs j, orch_job_timeline(j.id) t
WHERE j.event_type = 'fu_email_draft' AND t.entry LIKE 'follow-up%';

-- follow-ups are queued only by a step that succeeds: a failing step queues nothing
CREATE FUNCTION public.fu_fail_late(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"score": 0.1}'::jsonb $$;
SELECT orch_define_sequence('fu_failing', $$[
  {"name": "score", "kind": "sql", "function": "fu_fail_late", "expect": "$.score > 0.5",
   "followups": [{"type": "fu_proposal_generation", "payload": {"meeting_id": "x"}}]}]$$);
SELECT job_id AS ff FROM orch_submit_event('fu_failing', 'test:followup', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'ff');
SELECT count(*) AS orphan_followups FROM orchestrator.sequence_jobs WHERE parent_job_id = :'ff';
