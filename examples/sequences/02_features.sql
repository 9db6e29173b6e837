-- examples/sequences/02_features.sql: switch every event type the examples
-- define on for the demo org (orchestrator.notification_feature_settings;
-- an event type with no row is enabled too, but an explicit row is what an
-- admin screen would toggle, and orch_fan_out reads it).

INSERT INTO orchestrator.notification_feature_settings (org_id, feature_key, is_enabled)
SELECT '00000000-0000-0000-0000-00000000000a', feature_key, true
FROM unnest(ARRAY['meeting_ended', 'pre_meeting', 'morning_brief', 'email_received', 'proposal_generation',
                  'calendar_find_times', 'campaign_check', 'coaching_digest', 'slack_approval_received'])
     AS feature_key
ON CONFLICT (org_id, feature_key) DO UPDATE SET is_enabled = true, updated_at = now();
