/*-------------------------------------------------------------------------
 *
 * context.c
 *	  Context tiers 2 and 3: loading a job's context sources before a step.
 *
 * Tier 1 is loaded with the claim (job_state.c, orchestrator.load_tier1).
 * orch_context_load loads tier 2 sources before a job's first step, when
 * the payload names a contact_id or deal_id, and tier 3 sources only before
 * a step that lists them in requires_context; only then does it ask
 * orchestrator.context_needed which of them are not loaded yet.
 * Nothing else is ever loaded, so tier 3 is never fetched speculatively.
 *
 * A function source runs at once, user-scoped, as the role that defined it
 * (step_sql.c), in a subtransaction.  An endpoint source parks the job on an
 * HTTP request exactly like an http step; orch_context_resume stores the
 * response when it comes.  Each result goes to state.context.tier2/tier3
 * under the source's name, with a step_history row of kind "context", as
 * one transition of the job (job_state.c).  A
 * source that fails is stored as null with its error in
 * state.context.errors, and the step runs on with the context it has: the
 * seed's "skip the enrichment, continue with available data".
 *
 * src/context.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "context.h"
#include "job_state.h"
#include "step_http.h"
#include "step_sql.h"
#include "util.h"

static SPIPlanPtr needed_plan = NULL;

typedef struct ContextSource
{
	char	   *name;
	int			tier;
	char	   *function;
	char	   *endpoint;
	Oid			run_as;
} ContextSource;

/*
 * store writes one source's result (or its error) into the job's state, a
 * transition of the job (job_state.c).  Returns the new state, or NULL
 * when the lease was lost.
 */
static Jsonb *
store(const OrchClaimedJob *job, int step_index, int tier, const char *name, Jsonb *data,
	  const char *error, TimestampTz started, long http_status)
{
	OrchJobTransition t;

	orch_job_worker_transition(&t, ORCH_TRANSITION_CONTEXT, job, ORCH_JOB_IN_PROGRESS);
	t.step_index = step_index;
	t.tier = tier;
	t.name = name;
	t.data = data;
	t.error = error;
	t.started_at = started;
	t.http_status = http_status;
	orch_job_transition(&t, 1);
	return t.state;
}

/*
 * needed lists the sources not loaded yet: tier 2 ones when tier2, tier 3
 * ones the step (NULL: none) requires.
 */
static List *
needed(Jsonb *state, Jsonb *step, bool tier2)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			ret;
	List	   *out = NIL;

	if (needed_plan == NULL)
	{
		Oid			types[3] = {JSONBOID, JSONBOID, BOOLOID};

		needed_plan = orch_prepare_kept(
			"SELECT name, tier, function, endpoint, run_as FROM orchestrator.context_needed($1, $2, $3)",
			3, types);
	}
	args[0] = JsonbPGetDatum(state);
	args[1] = step ? JsonbPGetDatum(step) : (Datum) 0;
	nulls[1] = step ? ' ' : 'n';
	args[2] = BoolGetDatum(tier2);
	ret = SPI_execute_plan(needed_plan, args, nulls, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator context lookup failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ContextSource *s = palloc0(sizeof(ContextSource));
		bool		isnull;
		Datum		d;

		s->name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		s->tier = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		s->function = isnull ? NULL : TextDatumGetCString(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		s->endpoint = isnull ? NULL : TextDatumGetCString(d);
		s->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		out = lappend(out, s);
	}
	return out;
}

/* One source's load: what orch_in_subxact runs. */
typedef struct Load
{
	const OrchClaimedJob *job;
	int			step_index;
	ContextSource *source;
	Jsonb	   *state;
	OrchHttpRequest *response;	/* an endpoint's answer, when resuming */
	Jsonb	   *data;			/* out: what the source returned */
	OrchHttpRequest *request;	/* out: an endpoint's request to send */
} Load;

/*
 * run_function calls a function source, user-scoped, as its definer; SIGTERM
 * cancels it like a step's function.
 */
static void
run_function(void *arg)
{
	Load	   *l = arg;

	l->data = orch_step_sql_execute(l->source->function, NULL, l->state, l->source->run_as, 0, NULL);
	orch_check_json_depth(l->data, "context source", l->source->name);
}

/*
 * build_request prepares an endpoint source's request (step_http.c).  A
 * request that cannot be built (a secret not set) is that source's failure.
 */
static void
build_request(void *arg)
{
	Load	   *l = arg;

	l->request = orch_context_http_prepare(l->job, l->step_index, l->source->name, l->source->tier,
										   l->source->endpoint, l->state);
}

/* read_response reads an endpoint source's answer (a 429 is a failure here) */
static void
read_response(void *arg)
{
	Load	   *l = arg;
	TimestampTz defer_until;

	l->data = orch_step_http_result(l->response, &defer_until);
	if (l->data == NULL)
		ereport(ERROR,
				(errmsg("endpoint \"%s\" answered HTTP 429 (rate limited)",
						orch_step_request(l->response)->endpoint)));
	orch_check_json_depth(l->data, "context source", orch_step_request(l->response)->context_name);
}

/*
 * orch_context_load loads the sources due before the step at step_index:
 * tier 2 before the first step, when the payload names a contact or deal;
 * tier 3 the step requires, when its condition holds.  Returns the new
 * state (the old one if nothing was due), or NULL when the lease was lost
 * or SIGTERM cancelled a source (the job is handed back).  When an endpoint
 * source must be fetched, *parked is set to its request and the caller
 * parks the job; the rest load on resume.
 */
Jsonb *
orch_context_load(const OrchClaimedJob *job, int step_index, Jsonb *step, Jsonb *state,
				  OrchHttpRequest **parked)
{
	Jsonb	   *payload = orch_jsonb_get(orch_jsonb_get(state, "event"), "payload");
	bool		tier2 = (step_index == 0 &&
						 (orch_jsonb_get(payload, "contact_id") != NULL ||
						  orch_jsonb_get(payload, "deal_id") != NULL));
	bool		tier3 = (orch_jsonb_get(step, "requires_context") != NULL);
	char	   *condition;
	ListCell   *lc;
	List	   *sources;

	*parked = NULL;
	/* a step that will be skipped needs no tier 3 */
	if (tier3 && (condition = orch_jsonb_get_text(step, "condition")) != NULL)
		tier3 = orch_jsonpath_truthy(state, condition);
	if (!tier2 && !tier3)
		return state;

	sources = needed(state, tier3 ? step : NULL, tier2);
	foreach(lc, sources)
	{
		ContextSource *s = lfirst(lc);
		TimestampTz started = GetCurrentTimestamp();
		Load		l = {job, step_index, s, state, NULL, NULL, NULL};
		ErrorData  *edata = orch_in_subxact(s->endpoint ? build_request : run_function, &l);

		if (edata == NULL && l.request != NULL)
		{
			*parked = l.request;
			return state;
		}
		/* SIGTERM cancelled it: store nothing; the lease is handed back */
		if (edata && ShutdownRequestPending && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			return NULL;
		state = store(job, step_index, s->tier, s->name, l.data, edata ? edata->message : NULL, started, 0);
		if (state == NULL)
			return NULL;
	}
	return state;
}

/*
 * orch_context_resume stores an endpoint source's response.  Returns the
 * new state, or NULL when the lease was lost.
 */
Jsonb *
orch_context_resume(const OrchClaimedJob *job, OrchHttpRequest *resume)
{
	OrchStepRequest *o = orch_step_request(resume);
	Load		l = {job, o->step_index, NULL, NULL, resume, NULL, NULL};
	ErrorData  *edata = orch_in_subxact(read_response, &l);

	return store(job, o->step_index, o->context_tier, o->context_name, l.data,
				 edata ? edata->message : NULL, resume->prepared_at, resume->status);
}
