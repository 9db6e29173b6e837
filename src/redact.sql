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
 * go, at any depth; ids (transcript_id, meeting_id) stay.  Values whose text
 * never mentions such a key are returned as they are, without a walk.
 */
CREATE FUNCTION orchestrator.strip_transcripts(p_value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
BEGIN
	IF jsonb_typeof(p_value) = 'object' THEN
		RETURN (SELECT COALESCE(jsonb_object_agg(e.key, orchestrator.strip_transcripts(e.value)), '{}'::jsonb)
		        FROM jsonb_each(p_value) e
		        WHERE e.key NOT IN ('transcript', 'transcript_text', 'transcript_body'));
	ELSIF jsonb_typeof(p_value) = 'array' THEN
		RETURN (SELECT COALESCE(jsonb_agg(orchestrator.strip_transcripts(e.value) ORDER BY e.ord), '[]'::jsonb)
		        FROM jsonb_array_elements(p_value) WITH ORDINALITY AS e(value, ord));
	END IF;
	RETURN p_value;
END
$$;
COMMENT ON FUNCTION orchestrator.strip_transcripts(jsonb) IS 'Removes the keys transcript, transcript_text and transcript_body at any depth (used by without_transcripts)';

CREATE FUNCTION orchestrator.without_transcripts(p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
	SELECT CASE WHEN strpos(p_value::text, '"transcript') = 0 THEN p_value
	            ELSE orchestrator.strip_transcripts(p_value) END
$$;
COMMENT ON FUNCTION orchestrator.without_transcripts(jsonb) IS 'Removes transcript text (keys transcript, transcript_text, transcript_body, at any depth) from a payload, output or edit: transcripts are referenced by id';
