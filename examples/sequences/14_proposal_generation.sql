-- examples/sequences/14_proposal_generation.sql: queued by meeting_ended's
-- detect-intents when the rep promised a proposal (source
-- orchestrator:chain, parent_job_id set).  Proposal templates are tier 3
-- context, loaded only for the step that needs them; the contact's CRM
-- record is tier 2 (the payload has contact_id).  The cover email goes out
-- only after approval.
--
-- Payload: {"meeting_id", "contact_id", "trigger_phrase"}.

SELECT orch_define_sequence('proposal_generation', $json$[
  {"name": "generate-proposal", "kind": "http", "endpoint": "generate-proposal", "ai": true,
   "requires_context": ["proposal_templates"],
   "expect": "$.proposal_id.type() == \"string\"",
   "description": "The generate-proposal edge function, with the templates loaded just before it"},
  {"name": "draft-cover-email", "kind": "http", "endpoint": "copywriter", "ai": true,
   "expect": "$.to.type() == \"string\" && $.body.type() == \"string\"",
   "description": "The copywriter skill drafts the email that carries the proposal"},
  {"name": "send-proposal", "kind": "http", "endpoint": "email-send-as-rep",
   "requires_approval": true, "approval": {"pattern": "email_draft", "draft": "draft-cover-email"},
   "description": "Sent as the rep, only after approval"}
]$json$) AS proposal_generation_version;
