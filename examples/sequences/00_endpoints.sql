-- examples/sequences/00_endpoints.sql: every edge function the seed's
-- sequences call, and Slack.
--
-- psql variable :'base' is where they live: https://<project>.supabase.co in
-- production, the stand-in (test/standin.py, http://127.0.0.1:PORT) in the
-- demo and tests.  Headers refer to secrets by name; set the secrets first:
--   SELECT orch_set_secret('service_key', '...');
--   SELECT orch_set_secret('slack_bot_token', 'xoxb-...');

SELECT count(*) AS edge_function_endpoints
FROM (SELECT orch_define_endpoint(fn, :'base' || '/functions/v1/' || fn, 5000,
                                  '{"Authorization": "Bearer {{secret:service_key}}"}')
      FROM unnest(ARRAY[
	'extract-action-items',          -- meeting_ended
	'detect-intents',                -- meeting_ended (commitments and signals)
	'suggest-next-actions',          -- meeting_ended
	'generate-proposal',             -- proposal_generation
	'proactive-meeting-prep',        -- pre_meeting briefing, morning brief prep status
	'proactive-pipeline-analysis',   -- morning brief pipeline pulse (org-wide)
	'email-classifier',              -- email_received
	'copywriter',                    -- email_received, proposal_generation drafts
	'email-send-as-rep',             -- every email send, after approval
	'find-available-slots',          -- calendar_find_times
	'monitor-campaigns',             -- campaign_check, morning brief (Instantly metrics)
	'coaching-analysis',             -- coaching_digest
	'apollo-enrichment',             -- tier 3 context: company and person enrichment
	'proposal-templates'             -- tier 3 context: proposal templates
      ]) AS fn) AS defined;

SELECT orch_define_endpoint('slack', :'base' || '/api/chat.postMessage', 5000,
                            '{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
