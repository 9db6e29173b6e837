/*-------------------------------------------------------------------------
 *
 * state.c
 *	  A job's SequenceState: folding a step's result into it, and keeping
 *	  transcripts out of everything the engine stores.
 *
 * orch_state_initial builds the state a new job starts with: the event,
 * no context yet, no outputs, every counter at zero.
 *
 * orch_state_advance is the fold every recorded step result goes through
 * (job_state.c holds the result, step.c runs the next step on the state it
 * returns): the step's output under outputs, its name in steps_completed,
 * an approval it opened in pending_approvals, the follow-ups it queued,
 * its cost, and the counters of execution_metadata.  It runs once per step
 * on the hot path, so it is C: as one jsonb_build_object expression in a
 * statement, initialising the expression cost more than the fold.
 *
 * orch_without_transcripts drops the keys transcript, transcript_text and
 * transcript_body at any depth from a payload, output or edit: the seed
 * references meeting transcripts by id and never copies them into state.
 * Its walk is a loop over the value's tokens, not a recursion, so no
 * nesting depth can exhaust the stack.
 *
 * SQL sees them as orchestrator.initial_state, orchestrator.advance_state
 * and orchestrator.without_transcripts.
 *
 * src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

#include "state.h"

PG_FUNCTION_INFO_V1(orch_initial_state_sql);
PG_FUNCTION_INFO_V1(orch_advance_state_sql);
PG_FUNCTION_INFO_V1(orch_without_transcripts_sql);

/* the top-level keys a fold rewrites; every other key is kept as it is */
static const char *const folded_keys[] = {
	"current_step", "queued_followups", "pending_approvals", "cost_accumulated",
	"outputs", "steps_completed", "execution_metadata"
};

static bool
key_is(const JsonbValue *k, const char *const *keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
		if (k->val.string.len == (int) strlen(keys[i]) &&
			memcmp(k->val.string.val, keys[i], k->val.string.len) == 0)
			return true;
	return false;
}

/* get: the value of key in an object value, or NULL (missing, or not an object) */
static JsonbValue *
get(const JsonbValue *obj, const char *key)
{
	if (obj == NULL || obj->type != jbvBinary || !JsonContainerIsObject(obj->val.binary.data))
		return NULL;
	return getKeyJsonValueFromContainer(obj->val.binary.data, key, strlen(key), NULL);
}

static void
push_null(JsonbParseState **ps, JsonbIteratorToken tok)
{
	JsonbValue	v;

	v.type = jbvNull;
	(void) pushJsonbValue(ps, tok, &v);
}

static void
push_numeric(JsonbParseState **ps, JsonbIteratorToken tok, Numeric n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = n;
	(void) pushJsonbValue(ps, tok, &v);
}

static void
push_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(ps, WJB_KEY, &v);
}

/* push_jsonb: a whole jsonb value as tok; NULL as JSON null */
static void
push_jsonb(JsonbParseState **ps, JsonbIteratorToken tok, Jsonb *j)
{
	JsonbValue	v;

	if (j == NULL)
		v.type = jbvNull;
	else if (JB_ROOT_IS_SCALAR(j))
		(void) JsonbExtractScalar(&j->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &j->root;
		v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
	(void) pushJsonbValue(ps, tok, &v);
}

/*
 * push_elements pushes the elements of an array value (a scalar counts as
 * one element, as jsonb || does).
 */
static void
push_elements(JsonbParseState **ps, JsonbValue *arr)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (arr->type != jbvBinary || !JsonContainerIsArray(arr->val.binary.data))
	{
		(void) pushJsonbValue(ps, WJB_ELEM, arr);
		return;
	}
	it = JsonbIteratorInit(arr->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			(void) pushJsonbValue(ps, WJB_ELEM, &v);
}

/* push_pairs pushes the pairs of an object value, but those named in skip */
static void
push_pairs(JsonbParseState **ps, const JsonbValue *obj, const char *const *skip, int nskip)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	it = JsonbIteratorInit(obj->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (key_is(&k, skip, nskip))
			continue;
		(void) pushJsonbValue(ps, WJB_KEY, &k);
		(void) pushJsonbValue(ps, WJB_VALUE, &v);
	}
}

static bool
is_object(const JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* numeric_of: a number value, or NULL (missing, null, not a number) */
static Numeric
numeric_of(const JsonbValue *v)
{
	return (v != NULL && v->type == jbvNumeric) ? v->val.numeric : NULL;
}

static Numeric
add_numeric(Numeric a, Numeric b)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(a), NumericGetDatum(b)));
}

/* push_count: counter + add, or null when the counter is not a number */
static void
push_count(JsonbParseState **ps, const JsonbValue *em, const char *key, int add)
{
	Numeric		n = numeric_of(get(em, key));

	push_key(ps, key);
	if (n == NULL)
		push_null(ps, WJB_VALUE);
	else
	{
		int32		count = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(n)));

		push_numeric(ps, WJB_VALUE, int64_to_numeric((int64) count + add));
	}
}

/* counted_followups: follow-ups that were queued (accepted or deferred) */
static int
counted_followups(Jsonb *followups)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	if (followups == NULL || !JB_ROOT_IS_ARRAY(followups) || JB_ROOT_IS_SCALAR(followups))
		return 0;
	it = JsonbIteratorInit(&followups->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *o;

		if (tok != WJB_ELEM || (o = get(&v, "outcome")) == NULL || o->type != jbvString)
			continue;
		if ((o->val.string.len == 8 && memcmp(o->val.string.val, "accepted", 8) == 0) ||
			(o->val.string.len == 8 && memcmp(o->val.string.val, "deferred", 8) == 0))
			n++;
	}
	return n;
}

static void
push_string(JsonbParseState **ps, JsonbIteratorToken tok, const char *str)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) str;
	v.val.string.len = strlen(str);
	(void) pushJsonbValue(ps, tok, &v);
}

/* push_uuid: a uuid as a JSON string, NULL as JSON null */
static void
push_uuid(JsonbParseState **ps, const pg_uuid_t *id)
{
	if (id == NULL)
		push_null(ps, WJB_VALUE);
	else
		push_string(ps, WJB_VALUE, DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))));
}

static void
push_empty(JsonbParseState **ps, const char *key, bool array)
{
	push_key(ps, key);
	(void) pushJsonbValue(ps, array ? WJB_BEGIN_ARRAY : WJB_BEGIN_OBJECT, NULL);
	(void) pushJsonbValue(ps, array ? WJB_END_ARRAY : WJB_END_OBJECT, NULL);
}

static void
push_zero(JsonbParseState **ps, const char *key)
{
	push_key(ps, key);
	push_numeric(ps, WJB_VALUE, int64_to_numeric(0));
}

/*
 * orch_state_initial returns the state a job starts with:
 *   event               type, source, org_id, user_id, payload, parent_job_id
 *   context, outputs    {}
 *   steps_completed, pending_approvals, queued_followups  []
 *   current_step, cost_accumulated  0;  started_at  null
 *   execution_metadata  sequence_job_id, event_type, event_source,
 *                       chain_depth, and every counter at 0
 * parent_job_id may be NULL.
 */
Jsonb *
orch_state_initial(const pg_uuid_t *job_id, const char *type, const char *source, const pg_uuid_t *org_id,
				   const pg_uuid_t *user_id, Jsonb *payload, const pg_uuid_t *parent_job_id, int chain_depth)
{
	static const char *const counters[] = {
		"steps_attempted", "steps_completed", "steps_failed", "approval_gates_hit",
		"followups_queued", "total_duration_ms", "total_ai_cost"
	};
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_key(&ps, "event");
	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_key(&ps, "type");
	push_string(&ps, WJB_VALUE, type);
	push_key(&ps, "source");
	push_string(&ps, WJB_VALUE, source);
	push_key(&ps, "org_id");
	push_uuid(&ps, org_id);
	push_key(&ps, "user_id");
	push_uuid(&ps, user_id);
	push_key(&ps, "payload");
	push_jsonb(&ps, WJB_VALUE, payload);
	push_key(&ps, "parent_job_id");
	push_uuid(&ps, parent_job_id);
	(void) pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	push_empty(&ps, "context", false);
	push_empty(&ps, "steps_completed", true);
	push_zero(&ps, "current_step");
	push_empty(&ps, "outputs", false);
	push_empty(&ps, "pending_approvals", true);
	push_empty(&ps, "queued_followups", true);
	push_key(&ps, "started_at");
	push_null(&ps, WJB_VALUE);
	push_zero(&ps, "cost_accumulated");
	push_key(&ps, "execution_metadata");
	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_key(&ps, "sequence_job_id");
	push_uuid(&ps, job_id);
	push_key(&ps, "event_type");
	push_string(&ps, WJB_VALUE, type);
	push_key(&ps, "event_source");
	push_string(&ps, WJB_VALUE, source);
	for (int i = 0; i < lengthof(counters); i++)
		push_zero(&ps, counters[i]);
	push_key(&ps, "chain_depth");
	push_numeric(&ps, WJB_VALUE, int64_to_numeric(chain_depth));
	(void) pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * orch_state_advance folds one step result into state and returns the new
 * state:
 *   current_step       next_step
 *   queued_followups   the follow-ups (an array) appended
 *   pending_approvals  output appended when the outcome is awaiting_approval
 *   cost_accumulated   + cost_usd
 *   outputs            outputs[step_name] = output when succeeded
 *   steps_completed    step_name appended when succeeded
 *   execution_metadata steps_attempted (not for skipped, deferred or
 *                      awaiting_approval), approval_gates_hit,
 *                      steps_completed, steps_failed, total_ai_cost,
 *                      followups_queued (accepted or deferred ones),
 *                      total_duration_ms (rounded to 3 decimals)
 * A key missing from state becomes null, as jsonb arithmetic on NULL
 * would make it.
 */
Jsonb *
orch_state_advance(Jsonb *state, const char *step_name, const char *outcome, Jsonb *output,
				   double duration_ms, int next_step, Jsonb *followups, Numeric cost_usd)
{
	JsonbParseState *ps = NULL;
	JsonbValue	root;
	JsonbValue *v;
	JsonbValue *em;
	JsonbValue *res;
	bool		succeeded = strcmp(outcome, "succeeded") == 0;
	bool		awaiting = strcmp(outcome, "awaiting_approval") == 0;
	bool		attempted = !(awaiting || strcmp(outcome, "skipped") == 0 || strcmp(outcome, "deferred") == 0);
	Numeric		cost = cost_usd ? cost_usd : int64_to_numeric(0);
	Numeric		n;

	if (!JB_ROOT_IS_OBJECT(state))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a job's state must be a JSON object")));
	root.type = jbvBinary;
	root.val.binary.data = &state->root;
	root.val.binary.len = VARSIZE(state) - VARHDRSZ;

	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_pairs(&ps, &root, folded_keys, lengthof(folded_keys));

	push_key(&ps, "current_step");
	push_numeric(&ps, WJB_VALUE, int64_to_numeric(next_step));

	push_key(&ps, "queued_followups");
	if ((v = get(&root, "queued_followups")) == NULL || v->type == jbvNull)
		push_null(&ps, WJB_VALUE);
	else
	{
		(void) pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		push_elements(&ps, v);
		if (followups != NULL)
		{
			JsonbValue	f;

			f.type = jbvBinary;
			f.val.binary.data = &followups->root;
			f.val.binary.len = VARSIZE(followups) - VARHDRSZ;
			if (JB_ROOT_IS_SCALAR(followups))
				(void) JsonbExtractScalar(&followups->root, &f);
			push_elements(&ps, &f);
		}
		(void) pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	}

	push_key(&ps, "pending_approvals");
	if ((v = get(&root, "pending_approvals")) == NULL || v->type == jbvNull)
		push_null(&ps, WJB_VALUE);
	else if (!awaiting)
		(void) pushJsonbValue(&ps, WJB_VALUE, v);
	else
	{
		(void) pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		push_elements(&ps, v);
		push_jsonb(&ps, WJB_ELEM, output);
		(void) pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	}

	push_key(&ps, "cost_accumulated");
	if ((n = numeric_of(get(&root, "cost_accumulated"))) == NULL)
		push_null(&ps, WJB_VALUE);
	else
		push_numeric(&ps, WJB_VALUE, add_numeric(n, cost));

	push_key(&ps, "outputs");
	v = get(&root, "outputs");
	if (!is_object(v))
		push_null(&ps, WJB_VALUE);
	else if (!succeeded)
		(void) pushJsonbValue(&ps, WJB_VALUE, v);
	else
	{
		(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_pairs(&ps, v, &step_name, 1);
		push_key(&ps, step_name);
		push_jsonb(&ps, WJB_VALUE, output);
		(void) pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}

	push_key(&ps, "steps_completed");
	if ((v = get(&root, "steps_completed")) == NULL || v->type == jbvNull)
		push_null(&ps, WJB_VALUE);
	else if (!succeeded)
		(void) pushJsonbValue(&ps, WJB_VALUE, v);
	else
	{
		JsonbValue	name;

		name.type = jbvString;
		name.val.string.val = (char *) step_name;
		name.val.string.len = strlen(step_name);
		(void) pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		push_elements(&ps, v);
		(void) pushJsonbValue(&ps, WJB_ELEM, &name);
		(void) pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	}

	push_key(&ps, "execution_metadata");
	em = get(&root, "execution_metadata");
	if (!is_object(em))
		push_null(&ps, WJB_VALUE);
	else
	{
		static const char *const counters[] = {
			"steps_attempted", "approval_gates_hit", "steps_completed", "steps_failed",
			"total_ai_cost", "followups_queued", "total_duration_ms"
		};

		(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_pairs(&ps, em, counters, lengthof(counters));
		push_count(&ps, em, "steps_attempted", attempted ? 1 : 0);
		push_count(&ps, em, "approval_gates_hit", awaiting ? 1 : 0);
		push_count(&ps, em, "steps_completed", succeeded ? 1 : 0);
		push_count(&ps, em, "steps_failed", strcmp(outcome, "failed") == 0 ? 1 : 0);
		push_count(&ps, em, "followups_queued", counted_followups(followups));
		push_key(&ps, "total_ai_cost");
		if ((n = numeric_of(get(em, "total_ai_cost"))) == NULL)
			push_null(&ps, WJB_VALUE);
		else
			push_numeric(&ps, WJB_VALUE, add_numeric(n, cost));
		push_key(&ps, "total_duration_ms");
		if ((n = numeric_of(get(em, "total_duration_ms"))) == NULL)
			push_null(&ps, WJB_VALUE);
		else
		{
			Numeric		d = DatumGetNumeric(DirectFunctionCall1(float8_numeric, Float8GetDatum(duration_ms)));

			push_numeric(&ps, WJB_VALUE,
						 DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(add_numeric(n, d)),
															 Int32GetDatum(3))));
		}
		(void) pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}

	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* is a transcript key: transcript, transcript_text, transcript_body */
static bool
transcript_key(const JsonbValue *k)
{
	static const char *const keys[] = {"transcript", "transcript_text", "transcript_body"};

	return key_is(k, keys, lengthof(keys));
}

/*
 * mentions_transcript: whether any key of the value starts with
 * "transcript" (a cheap test on the binary form, without building text:
 * keys are stored as they are).
 */
static bool
mentions_transcript(Jsonb *j)
{
	const char *p = (const char *) VARDATA(j);
	Size		len = VARSIZE(j) - VARHDRSZ;

	for (Size i = 0; i + 10 <= len; i++)
		if (p[i] == 't' && memcmp(p + i, "transcript", 10) == 0)
			return true;
	return false;
}

/*
 * orch_without_transcripts returns value without transcript keys at any
 * depth (the value itself when it has none).  One pass over its tokens:
 * after a transcript key, its value is skipped, scalar or container.
 */
Jsonb *
orch_without_transcripts(Jsonb *value)
{
	JsonbParseState *ps = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;
	int			skip_depth = 0; /* > 0: inside a skipped container */
	bool		skip_next = false;	/* the value after a transcript key */

	if (value == NULL || JB_ROOT_IS_SCALAR(value) || !mentions_transcript(value))
		return value;

	it = JsonbIteratorInit(&value->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		if (skip_depth > 0)
		{
			if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
				skip_depth++;
			else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
				skip_depth--;
			continue;
		}
		if (skip_next)
		{
			skip_next = false;
			if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
				skip_depth = 1;
			continue;
		}
		if (tok == WJB_KEY && transcript_key(&v))
		{
			skip_next = true;
			continue;
		}
		/*
		 * A container's start and end carry no value: pushJsonbValue accepts
		 * one with an array's start only for a raw scalar, which the root
		 * check above has already returned.
		 */
		if (tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM)
			res = pushJsonbValue(&ps, tok, &v);
		else
			res = pushJsonbValue(&ps, tok, NULL);
	}
	return JsonbValueToJsonb(res);
}

/*
 * orchestrator.initial_state(job_id, type, source, org_id, user_id, payload,
 * parent_job_id, chain_depth): orch_state_initial for SQL.
 */
Datum
orch_initial_state_sql(PG_FUNCTION_ARGS)
{
	for (int i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();
	PG_RETURN_JSONB_P(orch_state_initial(PG_GETARG_UUID_P(0),
										 text_to_cstring(PG_GETARG_TEXT_PP(1)),
										 text_to_cstring(PG_GETARG_TEXT_PP(2)),
										 PG_GETARG_UUID_P(3), PG_GETARG_UUID_P(4),
										 PG_GETARG_JSONB_P(5),
										 PG_ARGISNULL(6) ? NULL : PG_GETARG_UUID_P(6),
										 PG_ARGISNULL(7) ? 0 : PG_GETARG_INT32(7)));
}

/*
 * orchestrator.advance_state(state, step_name, outcome, output,
 * duration_ms, next_step, followups, cost_usd): orch_state_advance for SQL.
 */
Datum
orch_advance_state_sql(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(orch_state_advance(PG_GETARG_JSONB_P(0),
										 text_to_cstring(PG_GETARG_TEXT_PP(1)),
										 text_to_cstring(PG_GETARG_TEXT_PP(2)),
										 PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
										 PG_ARGISNULL(4) ? 0 : PG_GETARG_FLOAT8(4),
										 PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5),
										 PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6),
										 PG_ARGISNULL(7) ? NULL : PG_GETARG_NUMERIC(7)));
}

/*
 * orchestrator.without_transcripts(value): orch_without_transcripts for SQL.
 */
Datum
orch_without_transcripts_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(orch_without_transcripts(PG_GETARG_JSONB_P(0)));
}
