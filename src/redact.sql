/*-------------------------------------------------------------------------
 *
 * redact.sql
 *	  Privacy: redaction of stored errors (C, redact.c) and transcript stripping.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/redact.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE FUNCTION orchestrator.redact(p_text text) RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'orch_redact_sql';
COMMENT ON FUNCTION orchestrator.redact(text) IS 'Masks email addresses (as [email]) and credentials (after Bearer/Basic/Token, values of secret-bearing keys, Slack tokens, JWTs, as [redacted]) in text stored as an error; workers mask their server log lines the same way';

/*
 * without_transcripts drops transcript text from what the engine stores:
 * the seed references meeting transcripts by id and never copies them into
 * orchestrator state.  Keys transcript, transcript_text and transcript_body
 * go, at any depth; ids (transcript_id, meeting_id) stay (state.c: one
 * loop over the value's tokens, so no nesting depth exhausts the stack).
 * Values that never mention such a key are returned as they are.
 */
CREATE FUNCTION orchestrator.without_transcripts(p_value jsonb) RETURNS jsonb
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'orch_without_transcripts_sql';
COMMENT ON FUNCTION orchestrator.without_transcripts(jsonb) IS 'Removes transcript text (keys transcript, transcript_text, transcript_body, at any depth) from a payload, output or edit: transcripts are referenced by id';
