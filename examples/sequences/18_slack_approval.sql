-- examples/sequences/18_slack_approval.sql: the slack-interactive side of
-- approval gates.  When the rep clicks Approve, Edit, Skip or Cancel on an
-- approval request, the Slack interactivity webhook (an edge function, or
-- PostgREST) inserts one row here; the trigger submits it, in the same
-- transaction, as the seed's slack_approval_received event from
-- slack:button_approve.  The engine resolves that event itself (no sequence
-- is needed): the paused job resumes at resume_step, skips it, or is
-- cancelled.  A click on an approval that was already resolved changes
-- nothing (outcome duplicate in orchestrator.event_log).

CREATE TABLE app.slack_interactions (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id uuid NOT NULL,
	user_id uuid NOT NULL,
	action text NOT NULL CHECK (action IN ('approve', 'edit', 'skip', 'cancel')),
	pending_action_id uuid NOT NULL,
	sequence_job_id uuid NOT NULL,
	resume_step integer NOT NULL,
	user_modifications jsonb,
	received_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE app.slack_interactions IS 'Slack button clicks on approval requests; each row becomes a slack_approval_received event';
COMMENT ON COLUMN app.slack_interactions.user_id IS 'The user who clicked (from slack_user_mappings); only the user the approval was sent to may resolve it';
COMMENT ON COLUMN app.slack_interactions.pending_action_id IS 'From the button''s value: the orchestrator.slack_pending_actions row';
COMMENT ON COLUMN app.slack_interactions.user_modifications IS 'The edited draft fields (action edit), merged into the draft before the gated step runs';

ALTER TABLE app.slack_interactions ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.slack_interactions
	USING ((NULLIF(current_setting('request.jwt.claims', true), '')::jsonb->>'sub')::uuid = user_id)
	WITH CHECK ((NULLIF(current_setting('request.jwt.claims', true), '')::jsonb->>'sub')::uuid = user_id);
COMMENT ON POLICY own_rows ON app.slack_interactions IS 'A signed-in user records only their own clicks';
GRANT SELECT, INSERT ON app.slack_interactions TO authenticated;

CREATE TRIGGER submit_approval AFTER INSERT ON app.slack_interactions
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('slack_approval_received', 'slack:button_approve');
COMMENT ON TRIGGER submit_approval ON app.slack_interactions IS 'Submits each click as a slack_approval_received event in the inserting transaction';
