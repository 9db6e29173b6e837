-- examples/sequences/13_email_received.sql: an email arrives (Gmail or O365
-- push, source webhook:email).  It is classified; if it needs a reply, the
-- copywriter drafts one, and the reply is sent as the rep only after the rep
-- approved (or edited) the draft in Slack: every email send needs approval.
--
-- Payload: {"thread_id", "from", "from_name", "subject", "snippet",
-- "contact_id"}.

SELECT orch_define_sequence('email_received', $json$[
  {"name": "classify", "kind": "http", "endpoint": "email-classifier", "ai": true,
   "expect": "$.intent.type() == \"string\"",
   "description": "Email intent classification"},
  {"name": "draft-reply", "kind": "http", "endpoint": "copywriter", "ai": true,
   "condition": "$.outputs.classify.intent == \"reply_needed\"",
   "expect": "$.to.type() == \"string\" && $.subject.type() == \"string\" && $.body.type() == \"string\"",
   "description": "The copywriter skill drafts the reply"},
  {"name": "send-reply", "kind": "http", "endpoint": "email-send-as-rep",
   "condition": "$.outputs.classify.intent == \"reply_needed\"",
   "requires_approval": true, "approval": {"pattern": "email_draft", "draft": "draft-reply"},
   "description": "Sent as the rep, only after approval; an edit changes the draft first"}
]$json$) AS email_received_version;
