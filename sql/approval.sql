--
-- approval: HITL gates.  A gated step pauses its job (awaiting_approval)
-- with a pending action and a Slack message from a HITL pattern; the rep
-- resolves it with orch_resolve_approval or a slack_approval_received event:
-- approve, edit, skip, cancel, once only, and only for their own approvals.
-- The seed's safeguards (email send, deal-stage change, task creation)
-- are gated whatever the definition says.
--
SET timezone = 'UTC';
\set org_a '00000000-0000-0000-0000-00000000000a'
\set ada '00000000-0000-0000-0000-0000000000a1'
\set quincy '00000000-0000-0000-0000-0000000000a2'
SELECT standin('POST', '/_control/reset');
UPDATE orchestrator.slack_user_preferences SET max_notifications_per_hour = 100 WHERE user_id = :'ada';

CREATE TABLE public.sent_emails (job uuid, to_addr text, subject text, body text);
CREATE FUNCTION public.draft_email(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('to', 'ceo@globex.example', 'subject', 'Proposal for Globex',
	                          'body', 'Hi, as promised, our proposal.')
$$;
CREATE FUNCTION public.send_email(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.sent_emails
	SELECT (state->'execution_metadata'->>'sequence_job_id')::uuid, d->>'to', d->>'subject', d->>'body'
	FROM (SELECT state->'outputs'->'draft-email' AS d) s;
	SELECT jsonb_build_object('sent', true)
$$;
CREATE FUNCTION public.after_send(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('approvals', state->'approvals') $$;
CREATE FUNCTION public.move_stage(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{"moved": true}'::jsonb $$;
CREATE FUNCTION public.create_tasks_fn(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{"tasks": 2}'::jsonb $$;

-- safeguards: recognised steps are gated even when the definition is silent,
-- and an explicit "requires_approval": false is rejected with the reason
SELECT orch_define_sequence('appr_silent', '[
  {"name": "draft-email", "kind": "sql", "function": "draft_email"},
  {"name": "email-send-as-rep", "kind": "sql", "function": "send_email"}]');
SELECT steps->1->'requires_approval' AS gated, steps->1->>'effect' AS effect
FROM orchestrator.sequence_definitions WHERE event_type = 'appr_silent';
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "send-email", "kind": "sql", "function": "send_email", "requires_approval": false}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "crm", "kind": "sql", "function": "move_stage", "effect": "deal_stage_change", "requires_approval": false}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "update-deal-stage", "kind": "sql", "function": "move_stage", "requires_approval": false}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "tasks", "kind": "sql", "function": "create_tasks_fn", "requires_approval": false}]')$$);
-- recognised by the endpoint's URL too
SELECT orch_define_endpoint('mailer', current_setting('test.standin') || '/functions/v1/email-send-as-rep');
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "deliver", "kind": "http", "endpoint": "mailer", "requires_approval": false}]')$$);
SELECT orchestrator.guarded_effect('{"name": "notify-rep", "kind": "notify"}') IS NULL AS slack_summary_not_gated;
-- bad approval fields
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "approval": {"pattern": "generic"}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "requires_approval": true, "approval": {"pattern": "nope"}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "requires_approval": true, "approval": {"draft": "later"}}, {"name": "later", "kind": "sql", "function": "move_stage"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "requires_approval": true, "approval": {"colour": "red"}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "effect": "teleport"}]')$$);
SELECT test_error($$SELECT orch_define_hitl_pattern('p', '{"fields": []}')$$);
SELECT test_error($$SELECT orch_define_hitl_pattern('p', '{"title": "t", "actions": ["approve", "launch"]}')$$);
SELECT test_error($q$SELECT orch_define_hitl_pattern('p', '{"title": "t", "fields": [{"label": "x", "path": "$$$"}]}')$q$);

-- the email flow: draft, gate, send with the draft (as edited), then on
SELECT orch_define_sequence('appr_email', '[
  {"name": "draft-email", "kind": "sql", "function": "draft_email"},
  {"name": "email-send-as-rep", "kind": "sql", "function": "send_email",
   "requires_approval": true, "approval": {"pattern": "email_draft", "draft": "draft-email"}},
  {"name": "after", "kind": "sql", "function": "after_send"}]');

SELECT job_id AS j1 FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-1"}') \gset
SELECT test_wait_job(:'j1', '{awaiting_approval,failed}');
SELECT status, current_step, lease_owner IS NULL AS no_lease,
       context->'execution_metadata'->'approval_gates_hit' AS gates,
       jsonb_array_length(context->'pending_approvals') AS pending,
       context->'outputs' ? 'email-send-as-rep' AS sent
FROM orchestrator.sequence_jobs WHERE id = :'j1';
SELECT count(*) AS emails_sent FROM public.sent_emails;
SELECT id AS pa1 FROM orchestrator.slack_pending_actions WHERE job_id = :'j1' \gset
SELECT step_index, step_name, effect, pattern, draft_step, draft->>'subject' AS draft_subject, status,
       message->>'text' AS title
FROM orchestrator.slack_pending_actions WHERE id = :'pa1';
-- the message went to Slack with one button per action, each carrying the resume payload
SELECT test_wait_for($$SELECT count(*) = 1 FROM standin_requests('/api/chat.postMessage')$$);
SELECT r->'body'->>'channel' AS channel, r->'body'->>'text' AS text,
       jsonb_path_query_array(r->'body', '$.blocks[*] ? (@.type == "actions").elements[*].text.text') AS buttons,
       (jsonb_path_query_first(r->'body', '$.blocks[*] ? (@.type == "actions").elements[0].value') #>> '{}')::jsonb
         - 'pending_action_id' - 'sequence_job_id' AS approve_value,
       jsonb_path_query_first(r->'body', '$.blocks[*] ? (@.type == "section").fields[1].text') AS subject_field
FROM standin_requests('/api/chat.postMessage') r;
SELECT (jsonb_path_query_first(r->'body', '$.blocks[*] ? (@.type == "actions").elements[0].value') #>> '{}')::jsonb->>'pending_action_id' = :'pa1'
       AS button_names_the_action
FROM standin_requests('/api/chat.postMessage') r;

-- who may resolve: not an anonymous SQL caller, not another user's claims
CREATE ROLE appr_rep LOGIN;
GRANT orchestrator_submitter TO appr_rep;
SET ROLE appr_rep;
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'approve')$$, :'pa1'));
SELECT set_config('request.jwt.claims', json_build_object('sub', :'quincy', 'role', 'authenticated')::text, false);
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'approve')$$, :'pa1'));
-- nor submit events for another user
SELECT test_error(format($$SELECT * FROM orch_submit_event('appr_email', 'x', %L, %L)$$, :'org_a', :'ada'));
SELECT test_error(format($$SELECT * FROM orch_submit_event('slack_approval_received', 'slack:button_approve', %L, %L, '{"action": "approve", "pending_action_id": "%s"}')$$, :'org_a', :'ada', :'pa1'));
-- bad claims are an error, not a pass
SELECT set_config('request.jwt.claims', '{"sub": "not-a-uuid"}', false);
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'approve')$$, :'pa1'));
-- the owner's claims: bad actions and edits are refused, then the edit applies once
SELECT set_config('request.jwt.claims', json_build_object('sub', :'ada', 'role', 'authenticated')::text, false);
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'launch')$$, :'pa1'));
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'edit', '"shorter"')$$, :'pa1'));
SELECT test_error($$SELECT * FROM orch_resolve_approval('00000000-0000-0000-0000-000000000000', 'approve')$$);
SELECT outcome, job_id = :'j1' AS same_job, reason
FROM orch_resolve_approval(:'pa1', 'edit', '{"subject": "Globex proposal (revised)"}');
SELECT outcome, job_id = :'j1' AS same_job, reason
FROM orch_resolve_approval(:'pa1', 'approve');
RESET request.jwt.claims;
RESET ROLE;
SELECT test_wait_job(:'j1');
SELECT to_addr, subject, body FROM public.sent_emails WHERE job = :'j1';
SELECT status, resolved_by = :'ada' AS by_ada, resolved_via, modifications FROM orchestrator.slack_pending_actions WHERE id = :'pa1';
SELECT context->'outputs'->'draft-email'->>'subject' AS draft_now,
       context->'outputs'->'after'->'approvals'->'email-send-as-rep'->>'action' AS decision,
       jsonb_array_length(context->'pending_approvals') AS pending,
       context->'execution_metadata'->'approval_gates_hit' AS gates,
       context->'execution_metadata'->'steps_completed' AS steps_completed
FROM orchestrator.sequence_jobs WHERE id = :'j1';
SELECT entry, step FROM orch_job_timeline(:'j1') WHERE entry NOT LIKE 'event%';

-- through the event, as slack-interactive sends it: approve, then the same click again
SELECT job_id AS j2 FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-2"}') \gset
SELECT test_wait_job(:'j2', '{awaiting_approval,failed}');
SELECT id AS pa2 FROM orchestrator.slack_pending_actions WHERE job_id = :'j2' \gset
SELECT outcome, job_id = :'j2' AS same_job, reason
FROM orch_submit_event('slack_approval_received', 'slack:button_approve', :'org_a', :'ada',
	jsonb_build_object('action', 'approve', 'pending_action_id', :'pa2', 'sequence_job_id', :'j2', 'resume_step', 1));
SELECT outcome, job_id = :'j2' AS same_job, reason
FROM orch_submit_event('slack_approval_received', 'slack:button_approve', :'org_a', :'ada',
	jsonb_build_object('action', 'approve', 'pending_action_id', :'pa2', 'sequence_job_id', :'j2', 'resume_step', 1));
SELECT test_wait_job(:'j2');
SELECT count(*) AS emails_for_j2 FROM public.sent_emails WHERE job = :'j2';
SELECT event_type, event_source, outcome, reason FROM orchestrator.events
WHERE event_type = 'slack_approval_received' ORDER BY id;
-- the wrong user's click, a malformed payload and a button of another gate are errors
SELECT test_error(format($$SELECT * FROM orch_submit_event('slack_approval_received', 'slack:button_approve', %L, %L, '{"action": "approve", "pending_action_id": "%s", "resume_step": 0}')$$, :'org_a', :'ada', :'pa2'));
SELECT test_error(format($$SELECT * FROM orch_submit_event('slack_approval_received', 'slack:button_approve', %L, %L, '{"action": "approve", "pending_action_id": "%s", "sequence_job_id": "%s"}')$$, :'org_a', :'ada', :'pa2', :'j1'));
SELECT test_error(format($$SELECT * FROM orch_submit_event('slack_approval_received', 'slack:button_approve', %L, %L, '{"action": "approve", "pending_action_id": "%s"}')$$, :'org_a', :'quincy', :'pa2'));
SELECT test_error(format($$SELECT * FROM orch_submit_event('slack_approval_received', 'slack:button_approve', %L, %L, '{"action": "approve"}')$$, :'org_a', :'ada'));

-- skip: the gated step is recorded skipped and the job goes on
SELECT job_id AS j3 FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-3"}') \gset
SELECT test_wait_job(:'j3', '{awaiting_approval,failed}');
SELECT r.outcome, r.reason FROM orchestrator.slack_pending_actions a, orch_resolve_approval(a.id, 'skip') r WHERE a.job_id = :'j3';
SELECT test_wait_job(:'j3');
SELECT count(*) AS emails_for_j3 FROM public.sent_emails WHERE job = :'j3';
SELECT context->'outputs'->'after'->'approvals'->'email-send-as-rep'->>'action' AS decision FROM orchestrator.sequence_jobs WHERE id = :'j3';

-- cancel: the job is cancelled, nothing is sent
SELECT job_id AS j4 FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-4"}') \gset
SELECT test_wait_job(:'j4', '{awaiting_approval,failed}');
SELECT r.outcome, r.reason FROM orchestrator.slack_pending_actions a, orch_resolve_approval(a.id, 'cancel') r WHERE a.job_id = :'j4';
SELECT status FROM orchestrator.sequence_jobs WHERE id = :'j4';
SELECT count(*) AS emails_for_j4 FROM public.sent_emails WHERE job = :'j4';

-- a job cancelled while it waits: its approval is withdrawn, the late click changes nothing
SELECT job_id AS j5 FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-5"}') \gset
SELECT test_wait_job(:'j5', '{awaiting_approval,failed}');
SELECT orch_cancel_job(:'j5');
SELECT r.outcome, r.reason FROM orchestrator.slack_pending_actions a, orch_resolve_approval(a.id, 'approve') r WHERE a.job_id = :'j5';
SELECT a.status, jsonb_array_length(j.context->'pending_approvals') AS pending_in_state
FROM orchestrator.slack_pending_actions a JOIN orchestrator.sequence_jobs j ON j.id = a.job_id WHERE a.job_id = :'j5';
SELECT count(*) AS emails_for_j5 FROM public.sent_emails WHERE job = :'j5';

-- a false condition skips the step without asking
SELECT orch_define_sequence('appr_cond', '[
  {"name": "draft-email", "kind": "sql", "function": "draft_email"},
  {"name": "send-email", "kind": "sql", "function": "send_email", "condition": "$.event.payload.send == true"}]');
SELECT job_id AS j6 FROM orch_submit_event('appr_cond', 'webhook:email', :'org_a', :'ada', '{"send": false}') \gset
SELECT test_wait_job(:'j6', '{completed,failed,awaiting_approval}');
SELECT count(*) AS asked FROM orchestrator.slack_pending_actions WHERE job_id = :'j6';

-- retrying a job asks again: an approval is for one run
SELECT orch_retry_job(:'j1', 'email-send-as-rep');
SELECT test_wait_job(:'j1', '{awaiting_approval,failed,completed}');
SELECT count(*) AS emails_for_j1 FROM public.sent_emails WHERE job = :'j1';
SELECT status, count(*) FROM orchestrator.slack_pending_actions WHERE job_id = :'j1' GROUP BY status ORDER BY status;
SELECT orch_cancel_job(:'j1');

-- step code is never an administrator: a user-scoped step (Quincy's job)
-- trying to approve Ada's email is refused, and the email stays unsent
SELECT job_id AS jv FROM orch_submit_event('appr_email', 'webhook:email', :'org_a', :'ada', '{"thread_id": "t-victim"}') \gset
SELECT test_wait_job(:'jv', '{awaiting_approval,failed}');
CREATE FUNCTION public.approve_other(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT to_jsonb(r) FROM orch_resolve_approval(
		(SELECT a.id FROM orchestrator.slack_pending_actions a
		 WHERE a.job_id = (state->'event'->'payload'->>'victim')::uuid), 'approve') r
$$;
CREATE FUNCTION public.submit_other(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT to_jsonb(r) FROM orch_submit_event('appr_email', 'x', (state->'event'->>'org_id')::uuid,
		(state->'event'->'payload'->>'victim_user')::uuid) r
$$;
SELECT orch_define_sequence('appr_attack', '[{"name": "approve", "kind": "sql", "function": "approve_other", "on_failure": "continue"},
                                             {"name": "submit", "kind": "sql", "function": "submit_other", "on_failure": "continue"}]');
SELECT job_id AS ja FROM orch_submit_event('appr_attack', 'test', :'org_a', :'quincy',
	jsonb_build_object('victim', :'jv', 'victim_user', :'ada')) \gset
SELECT test_wait_job(:'ja');
SELECT step_name, outcome, regexp_replace(error, 'action [0-9a-f-]{36}', 'action <uuid>') AS error
FROM orchestrator.step_history WHERE job_id = :'ja' ORDER BY id;
SELECT a.status, j.status AS job_status FROM orchestrator.slack_pending_actions a JOIN orchestrator.sequence_jobs j ON j.id = a.job_id
WHERE a.job_id = :'jv';

-- actions the pattern does not offer, and edits without a draft, are refused
SELECT orch_define_sequence('appr_generic', '[{"name": "move-deal-stage", "kind": "sql", "function": "move_stage"}]');
SELECT job_id AS jg FROM orch_submit_event('appr_generic', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'jg', '{awaiting_approval,failed}');
SELECT id AS pag, pattern FROM orchestrator.slack_pending_actions WHERE job_id = :'jg' \gset
SELECT :'pattern' AS pattern;
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'edit', '{"stage": "won"}')$$, :'pag'));
SELECT orch_define_hitl_pattern('stage_no_draft', '{"title": "Move {{step}}?", "actions": ["approve", "edit", "cancel"]}');
SELECT orch_define_sequence('appr_nodraft', '[{"name": "move-deal-stage", "kind": "sql", "function": "move_stage",
                                              "approval": {"pattern": "stage_no_draft"}}]');
SELECT job_id AS jn FROM orch_submit_event('appr_nodraft', 'test', :'org_a', :'ada', '{}') \gset
SELECT test_wait_job(:'jn', '{awaiting_approval,failed}');
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'edit', '{"stage": "won"}')$$,
	(SELECT id FROM orchestrator.slack_pending_actions WHERE job_id = :'jn')));
SELECT test_error(format($$SELECT * FROM orch_resolve_approval(%L, 'skip')$$,
	(SELECT id FROM orchestrator.slack_pending_actions WHERE job_id = :'jn')));
SELECT orch_cancel_job(:'jg'), orch_cancel_job(:'jn'), orch_cancel_job(:'jv');

-- an endpoint cannot be turned into an email sender under an ungated step,
-- and context sources never send email, change deal stages or create tasks
SELECT orch_define_endpoint('crm-sync', current_setting('test.standin') || '/functions/v1/crm-sync');
SELECT orch_define_sequence('appr_sync', '[{"name": "sync", "kind": "http", "endpoint": "crm-sync"}]');
SELECT test_error($$SELECT orch_define_endpoint('crm-sync', current_setting('test.standin') || '/functions/v1/email-send-as-rep')$$);
SELECT url LIKE '%/crm-sync' AS url_unchanged FROM orchestrator.endpoints WHERE name = 'crm-sync';
SELECT test_error($$SELECT orch_define_context_source('outbox', 2, NULL, 'mailer')$$);
SELECT test_error($$SELECT orch_define_context_source('tasks', 3, 'create_tasks_fn')$$);

-- the engine's own event types are not for other callers
SET ROLE appr_rep;
SELECT test_error(format($$SELECT * FROM orch_submit_event('orchestrator:approval_request', 'x', %L, %L, '{}')$$, :'org_a', :'ada'));
RESET ROLE;
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "move_stage", "requires_approval": true, "followups": [{"type": "orchestrator:approval_request"}]}]')$$);
DROP ROLE appr_rep;
