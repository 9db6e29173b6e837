-- examples/sequences/10_meeting_ended.sql: the seed's main flow.  A meeting
-- ends (MeetingBaaS webhook); its action items are extracted, commitments
-- and signals detected (a rep's "I'll send you a proposal" queues a
-- proposal_generation follow-up), next actions suggested, tasks drafted from
-- the detected intents and created only once the rep approves them, and a
-- recap goes to Slack (inform-only).
--
-- Payload: {"meeting_id", "contact_id", "transcript_id"}: the transcript is
-- referred to by id; its text never enters the job's state.

-- "draft-tasks": one task per commitment the rep made.  This output is the
-- draft the approval shows; an edit replaces its keys.
CREATE FUNCTION app.draft_tasks_from_intents(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	SELECT jsonb_build_object('tasks', COALESCE(jsonb_agg(jsonb_build_object(
		'title', c->>'phrase', 'intent', c->>'intent', 'due_in_days', 3) ORDER BY ord), '[]'))
	FROM jsonb_path_query(state, '$.outputs."detect-intents".commitments[*] ? (@.speaker == "rep")')
	     WITH ORDINALITY AS x (c, ord)
$$;
COMMENT ON FUNCTION app.draft_tasks_from_intents(jsonb) IS 'Step function: drafts one task per commitment the rep made in the meeting';

-- "create-tasks": writes the approved (possibly edited) draft into app.tasks,
-- in the step's transaction.
CREATE FUNCTION app.create_tasks(state jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$
	WITH created AS (
		INSERT INTO app.tasks (org_id, user_id, contact_id, meeting_id, title, due_date, source_job_id)
		SELECT (state->'event'->>'org_id')::uuid, (state->'event'->>'user_id')::uuid,
		       (SELECT c.id FROM app.contacts c WHERE c.id::text = state->'event'->'payload'->>'contact_id'),
		       (SELECT m.id FROM app.calendar_events m WHERE m.id::text = state->'event'->'payload'->>'meeting_id'),
		       t->>'title', current_date + COALESCE((t->>'due_in_days')::int, 3),
		       (state->'execution_metadata'->>'sequence_job_id')::uuid
		FROM jsonb_array_elements(state->'outputs'->'draft-tasks'->'tasks') AS t
		RETURNING title
	)
	SELECT jsonb_build_object('created', count(*), 'titles', COALESCE(jsonb_agg(title ORDER BY title), '[]'))
	FROM created
$$;
COMMENT ON FUNCTION app.create_tasks(jsonb) IS 'Step function: creates the approved tasks in app.tasks (gated: task creation from detected intents)';

-- "slack-post-meeting": the recap, in Block Kit.  The transcript is linked
-- by id.
CREATE FUNCTION app.post_meeting_message(state jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
	WITH facts AS (
		SELECT COALESCE((SELECT m.title FROM app.calendar_events m
		                 WHERE m.id::text = state->'event'->'payload'->>'meeting_id'), 'your meeting') AS title,
		       (SELECT t.id FROM app.meeting_transcripts t
		        WHERE t.meeting_id::text = state->'event'->'payload'->>'meeting_id') AS transcript_id,
		       jsonb_array_length(COALESCE(state->'outputs'->'extract-action-items'->'action_items', '[]')) AS items,
		       jsonb_array_length(jsonb_path_query_array(state,
		           '$.outputs."detect-intents".commitments[*] ? (@.speaker == "rep")')) AS commitments,
		       (SELECT string_agg('- ' || (a->>'title'), E'\n' ORDER BY ord)
		        FROM jsonb_array_elements(COALESCE(state->'outputs'->'suggest-next-actions'->'next_actions', '[]'))
		             WITH ORDINALITY AS x (a, ord))
		           AS next_actions,
		       COALESCE((state->'outputs'->'create-tasks'->>'created')::int, 0) AS tasks
	)
	SELECT jsonb_build_object(
		'text', format('Meeting recap: %s', f.title),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text',
				jsonb_build_object('type', 'plain_text', 'text', 'Meeting recap: ' || f.title)),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*%s action items*, %s commitment(s) of yours, %s task(s) created', f.items, f.commitments, f.tasks)
				|| COALESCE(E'\n*Suggested next actions*\n' || f.next_actions, ''))),
			jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object('type', 'mrkdwn',
				'text', COALESCE('Transcript ' || f.transcript_id, 'No transcript'))))))
	FROM facts f
$$;
COMMENT ON FUNCTION app.post_meeting_message(jsonb) IS 'Notify function: the post-meeting recap (transcript linked by id, never quoted)';

SELECT orch_define_sequence('meeting_ended', $json$[
  {"name": "extract-action-items", "kind": "http", "endpoint": "extract-action-items",
   "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 500},
   "expect": "$.action_items.type() == \"array\"",
   "description": "The extract-action-items edge function reads the transcript by id"},
  {"name": "detect-intents", "kind": "http", "endpoint": "detect-intents", "ai": true,
   "expect": "$.commitments.type() == \"array\"",
   "followups": [{"type": "proposal_generation",
                  "for_each": "$.outputs.\"detect-intents\".commitments[*] ? (@.speaker == \"rep\" && @.intent == \"send_proposal\" && @.confidence >= 0.8)",
                  "payload": {"meeting_id": "$.event.payload.meeting_id",
                              "contact_id": "$.event.payload.contact_id",
                              "trigger_phrase": "@.phrase"}}],
   "description": "Commitments and signals; a rep's proposal promise queues proposal_generation"},
  {"name": "suggest-next-actions", "kind": "http", "endpoint": "suggest-next-actions", "on_failure": "continue",
   "description": "Enrichment: its failure is logged and the sequence goes on"},
  {"name": "draft-tasks", "kind": "sql", "function": "app.draft_tasks_from_intents",
   "description": "The tasks the rep is asked to approve"},
  {"name": "create-tasks", "kind": "sql", "function": "app.create_tasks",
   "condition": "$.outputs.\"draft-tasks\".tasks.size() > 0",
   "requires_approval": true, "approval": {"pattern": "task_creation", "draft": "draft-tasks"},
   "description": "Task creation from detected intents: only after the rep approves"},
  {"name": "slack-post-meeting", "kind": "notify", "function": "app.post_meeting_message",
   "description": "Inform-only recap in Slack"}
]$json$) AS meeting_ended_version;
