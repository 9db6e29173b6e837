/*-------------------------------------------------------------------------
 *
 * step.c
 *	  Running a claimed job's steps: the step dispatcher.
 *
 * orch_run_job locks the job under its fencing token, then runs steps from
 * current_step until the job completes, fails, is deferred, parks on an
 * HTTP request, or the worker is asked to stop.  For each step it evaluates
 * "condition" (false: recorded as skipped), dispatches on "kind", checks
 * "expect" on the output, and applies "on_failure": stop, continue, or
 * retry with exponential backoff done through run_at, never by sleeping.
 *
 * Time slices: after each step, a job that has run for orchestrator.max_slice
 * in this call is checkpointed and queued again (orchestrator:continuation),
 * so one long sequence never holds a worker while others wait.
 *
 * Approval gates: a step with requires_approval and no decision yet is not
 * run; the job stops in awaiting_approval (orchestrator.open_approval) until
 * the rep resolves it (orchestrator.resolve_approval).
 *
 * Context: before each step, the context sources due (tier 2 for contact
 * and deal events, tier 3 the step requires) are loaded (context.c); an
 * endpoint source parks the job like an http step.
 *
 * Kinds: "sql" runs at once (step_sql.c).  "http" and "notify" prepare a
 * request (step_http.c) and park the job: its lease is stretched to cover
 * the request's timeout, the transaction commits, and worker.c sends the
 * request.  When the response is in, orch_run_job is called again with it
 * ("resume"), in a new short transaction under the same fencing token, and
 * the response becomes that step's result; the steps after it run on.
 *
 * Transactions: the caller (worker.c) opens one transaction for a batch of
 * jobs.  Each job runs in a subtransaction, and each step in a nested one,
 * so a failing step rolls back its own writes only, and an error outside
 * any step fails that job only; neither ends the worker.  The step's result
 * is written (writeback.c) in the job's subtransaction, so it commits with
 * the step function's writes.
 *
 * src/step.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "orchestrator.h"

static SPIPlanPtr load_plan = NULL;
static SPIPlanPtr budget_plan = NULL;
static SPIPlanPtr cost_plan = NULL;
static SPIPlanPtr approval_plan = NULL;
static SPIPlanPtr failure_plan = NULL;

/* What the engine needs of a job to run it. */
typedef struct JobRun
{
	const OrchClaimedJob *job;
	Jsonb	   *state;
	Jsonb	   *steps;
	int			nsteps;
	int			current_step;
	int			attempts;
	char	   *event_type;
	Oid			run_as;			/* role that defined the sequence */
	OrchHttpRequest *resume;	/* response for the current step, if any */
	OrchHttpRequest *parked;	/* request the job now waits for, if any */
} JobRun;

static bool load_job(const OrchClaimedJob *job, JobRun *run);
static void run_steps(JobRun *run);
static void run_job(void *arg);
static void park(JobRun *run, OrchHttpRequest *request);
static void run_one_step(JobRun *run, Jsonb *step, OrchStepResult *r);
static void step_body(void *arg);
static void stay(JobRun *run, OrchStepResult *r, const char *job_status);
static bool step_approved(Jsonb *state, const char *step_name);
static Jsonb *open_approval(JobRun *run, Jsonb *step);
static bool budget_allows(JobRun *run);
static void notify_failure(JobRun *run, OrchStepResult *r);
static double record_cost(JobRun *run, const char *step_name, Jsonb *output);

/*
 * orch_run_job runs one claimed job as far as it goes in this transaction.
 */
void
orch_run_job(const OrchClaimedJob *job, OrchHttpRequest *resume, OrchHttpRequest **parked)
{
	JobRun		run;
	ErrorData  *edata;

	memset(&run, 0, sizeof(run));
	run.job = job;
	run.resume = resume;
	SPI_connect();
	edata = orch_in_subxact(run_job, &run);
	if (edata == NULL)
		*parked = run.parked;	/* only now is it the job's: its state is written */
	else
	{
		*parked = NULL;
		if (run.parked)
			orch_http_free(run.parked);
		ereport(WARNING,
				(errmsg("orchestrator job %s failed outside a step: %s",
						orch_uuid_str(&job->id), edata->message)));
		orch_write_job_failure(job, edata->message);
	}
	SPI_finish();
}

/* run_job: the job's subtransaction */
static void
run_job(void *arg)
{
	JobRun	   *run = arg;

	if (!load_job(run->job, run))
		return;
	if (run->resume && run->resume->step_index != run->current_step)
		ereport(LOG,
				(errmsg("orchestrator discarded the response of step \"%s\" of job %s: the job moved on",
						run->resume->step_name, orch_uuid_str(&run->job->id))));
	else
		run_steps(run);
}

/*
 * load_job locks the job row if this worker still holds its lease and reads
 * its state and its pinned sequence version.  Returns false when the lease
 * was lost (reclaimed, cancelled or retried meanwhile).
 */
static bool
load_job(const OrchClaimedJob *job, JobRun *run)
{
	Datum		args[2];
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	if (load_plan == NULL)
	{
		Oid			types[2] = {UUIDOID, INT8OID};

		load_plan = orch_prepare_kept(
			"SELECT j.context, d.steps, j.current_step, j.attempts, j.event_type, d.created_by"
			" FROM orchestrator.sequence_jobs j"
			" LEFT JOIN orchestrator.sequence_definitions d"
			"        ON d.event_type = j.event_type AND d.version = j.sequence_version"
			" WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'"
			" FOR UPDATE OF j",
			2, types);
	}

	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	ret = SPI_execute_plan(load_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator job load failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		ereport(LOG,
				(errmsg("orchestrator worker lost the lease on job %s before running it",
						orch_uuid_str(&job->id))));
		return false;
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	run->state = DatumGetJsonbP(SPI_getbinval(tup, desc, 1, &isnull));
	{
		Datum		steps = SPI_getbinval(tup, desc, 2, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the sequence version this job was started with no longer exists")));
		run->steps = DatumGetJsonbP(steps);
	}
	run->current_step = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	run->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	run->event_type = TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull));
	run->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
	if (isnull || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run->run_as)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that defined sequence \"%s\" no longer exists", run->event_type),
				 errhint("Define the sequence again as an existing role.")));
	run->nsteps = JB_ROOT_COUNT(run->steps);
	return true;
}

/*
 * run_steps runs steps until the job leaves in_progress, parks, uses its
 * time slice, or the worker is told to stop.
 */
static void
run_steps(JobRun *run)
{
	TimestampTz slice_start = GetCurrentTimestamp();

	if (run->current_step >= run->nsteps)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job is at step %d but its sequence has %d steps",
						run->current_step + 1, run->nsteps)));

	while (run->current_step < run->nsteps)
	{
		Jsonb	   *step = orch_jsonb_array_get(run->steps, run->current_step);
		OrchStepResult r;
		Jsonb	   *state;

		CHECK_FOR_INTERRUPTS();

		/* context tiers 2 and 3 due before this step (context.c) */
		if (run->resume && run->resume->context_name)
		{
			state = orch_context_resume(run->job, run->resume);
			run->resume = NULL;
			if (state == NULL)
				break;
			run->state = state;
		}
		if (run->resume == NULL)
		{
			OrchHttpRequest *request;

			state = orch_context_load(run->job, run->current_step, step, run->state, &request);
			if (state == NULL)
				break;
			run->state = state;
			if (request)
			{
				park(run, request);
				break;
			}
		}

		run_one_step(run, step, &r);
		run->resume = NULL;

		/* SIGTERM cancelled the step: leave the job leased, release hands it back */
		if (r.interrupted)
			break;

		/* an http or notify step sent its request: wait, holding the lease */
		if (r.outcome == ORCH_STEP_PARKED)
		{
			park(run, r.request);
			break;
		}

		state = orch_write_step_result(run->job, &r);
		if (state == NULL)
		{
			/*
			 * The row is locked by this transaction since load_job, so only
			 * the step itself can have moved the job on (cancelled or
			 * retried it): its action stands, and the job is left alone.
			 */
			ereport(LOG,
					(errmsg("orchestrator job %s was cancelled or retried by its own step \"%s\"; the step's result is not recorded",
							orch_uuid_str(&run->job->id),
							r.step_name)));
			break;
		}
		run->state = state;

		/* on_failure stop (or retries used up): the user hears why */
		if (strcmp(r.job_status, "failed") == 0 && !r.halted &&
			!orch_is_engine_event(run->event_type, strlen(run->event_type)))
			notify_failure(run, &r);

		if (strcmp(r.job_status, "in_progress") != 0)
			break;
		run->current_step = r.next_step;
		run->attempts = r.job_attempts;

		/* SIGTERM: stop between steps; the lease is handed back on exit */
		if (ShutdownRequestPending)
			break;

		/*
		 * Fairness (the seed's 150 s edge timeout): a job that has run for
		 * orchestrator.max_slice is checkpointed here, between steps, and
		 * queued again behind the jobs already due, as a continuation.
		 */
		if (orch_max_slice_ms > 0 &&
			TimestampDifferenceExceeds(slice_start, GetCurrentTimestamp(), orch_max_slice_ms))
		{
			if (orch_write_continuation(run->job, run->current_step))
				break;
		}
	}
}

/*
 * park makes the job wait for request (a step's, or a context source's):
 * its lease is stretched to cover the request's timeout, and the request
 * is sent once the transaction commits.  Nothing is sent when the job's
 * own step moved it on meanwhile.
 */
static void
park(JobRun *run, OrchHttpRequest *request)
{
	if (orch_write_park(run->job, request->timeout_ms + orch_lease_ms))
		run->parked = request;
	else
		orch_http_free(request);
}

/* A step's run, as step_body sees it in its subtransaction. */
typedef struct StepCall
{
	JobRun	   *run;
	Jsonb	   *step;
	OrchStepResult *r;
} StepCall;

/*
 * run_one_step runs the step at run->current_step in a subtransaction and
 * decides, from its outcome and on_failure, where the job goes next.
 */
static void
run_one_step(JobRun *run, Jsonb *step, OrchStepResult *r)
{
	char	   *condition = orch_jsonb_get_text(step, "condition");
	char	   *on_failure = orch_jsonb_get_text(step, "on_failure");
	Jsonb	   *retry = orch_jsonb_get(step, "retry");
	int			max_attempts = orch_jsonb_get_int(retry, "attempts", 1);
	int			backoff_ms = orch_jsonb_get_int(retry, "backoff_ms", 1000);
	bool		last;
	OrchHttpRequest *resume = run->resume;
	StepCall	call = {run, step, r};
	ErrorData  *edata;

	memset(r, 0, sizeof(*r));
	r->step_index = run->current_step;
	r->step_name = orch_jsonb_get_text(step, "name");
	r->kind = orch_jsonb_get_text(step, "kind");
	r->attempt = resume ? resume->attempt : run->attempts + 1;
	r->started_at = resume ? resume->prepared_at : GetCurrentTimestamp();
	if (r->step_name == NULL || r->kind == NULL)
		elog(ERROR, "step %d of the sequence has no name or kind", run->current_step + 1);

	if (MyBackendType == B_BG_WORKER)
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("orchestrator: job %s step \"%s\" (%s)",
										orch_uuid_str(&run->job->id),
										r->step_name, run->event_type));

	/*
	 * The seed's Step 5: a step that needs the rep's approval, and has none
	 * yet, stops the job before it runs.  The pending action, its Slack
	 * message and the job's state are written in this transaction; the job
	 * waits in awaiting_approval, holding no lease, until it is resolved.
	 */
	if (!resume && orch_jsonb_get_bool(step, "requires_approval") &&
		!step_approved(run->state, r->step_name) &&
		(condition == NULL || orch_jsonpath_truthy(run->state, condition)))
	{
		r->output = open_approval(run, step);
		r->outcome = ORCH_STEP_AWAITING;
		stay(run, r, "awaiting_approval");
		return;
	}

	/*
	 * The seed: check the budget before every AI-intensive step; over it,
	 * halt the whole sequence at once.  Outside the step's subtransaction,
	 * so the once-per-period notice it queues stays.
	 */
	if (!resume && orch_jsonb_get_bool(step, "ai") && !budget_allows(run))
	{
		r->outcome = ORCH_STEP_FAILED;
		r->halted = true;
		r->error = pstrdup("AI budget limit reached: sequence halted until the next billing period");
		stay(run, r, "failed");
		return;
	}

	edata = orch_in_subxact(step_body, &call);
	if (edata)
	{
		r->outcome = ORCH_STEP_FAILED;
		r->interrupted = (ShutdownRequestPending && edata->sqlerrcode == ERRCODE_QUERY_CANCELED);
		r->output = NULL;
		if (r->request)
		{
			orch_http_free(r->request);
			r->request = NULL;
		}
		r->error = edata->detail
			? psprintf("%s (%s)", edata->message, edata->detail)
			: pstrdup(edata->message);
		FreeErrorData(edata);

		/* a message Slack never took does not count against the user's rate */
		if (resume && strcmp(r->kind, "notify") == 0)
			orch_step_notify_record(resume, false, NULL);
	}

	r->finished_at = GetCurrentTimestamp();
	r->next_step = run->current_step + 1;
	r->job_attempts = 0;
	last = (r->next_step >= run->nsteps);

	if (r->outcome == ORCH_STEP_PARKED)
		r->job_status = "in_progress";
	else if (r->outcome == ORCH_STEP_DEFERRED)
		stay(run, r, "pending");	/* not a failure, not an attempt: later */
	else if (r->outcome != ORCH_STEP_FAILED)
		r->job_status = last ? "completed" : "in_progress";
	else if (on_failure && strcmp(on_failure, "retry") == 0 && r->attempt < max_attempts)
	{
		double		delay_ms = (double) backoff_ms * pow(2.0, (double) (r->attempt - 1));

		r->outcome = ORCH_STEP_RETRY;
		r->next_step = run->current_step;
		r->job_attempts = r->attempt;
		r->job_status = "pending";
		r->run_at = TimestampTzPlusMilliseconds(r->finished_at, (int64) Min(delay_ms, 86400000.0 * 7));
	}
	else if (on_failure && strcmp(on_failure, "continue") == 0)
		r->job_status = last ? "completed" : "in_progress";
	else
	{
		/* stop, or retry with its attempts used up */
		r->next_step = run->current_step;
		r->job_attempts = r->attempt;
		r->job_status = "failed";
	}
}

/*
 * stay leaves the job at this step, its attempts unchanged (an approval
 * gate, a budget halt, a deferral).
 */
static void
stay(JobRun *run, OrchStepResult *r, const char *job_status)
{
	r->finished_at = GetCurrentTimestamp();
	r->next_step = run->current_step;
	r->job_attempts = run->attempts;
	r->job_status = job_status;
}

/*
 * step_body runs the step itself, in its subtransaction (run_one_step):
 * its function, or its HTTP request prepared to be sent after the commit,
 * or the response that came in; then its expect check, and the follow-ups
 * and cost that commit with it.
 */
static void
step_body(void *arg)
{
	StepCall   *call = arg;
	JobRun	   *run = call->run;
	Jsonb	   *step = call->step;
	OrchStepResult *r = call->r;
	OrchHttpRequest *resume = run->resume;
	char	   *condition = orch_jsonb_get_text(step, "condition");
	char	   *expect = orch_jsonb_get_text(step, "expect");
	char	   *function = orch_jsonb_get_text(step, "function");
	char	   *scope = orch_jsonb_get_text(step, "scope");
	int			timeout_ms = orch_jsonb_get_int(step, "timeout_ms", 0);

	if (resume)
	{
		/* the response of this step's request; its condition held when sent */
		TimestampTz defer_until;

		r->http_status = resume->status;
		r->output = orch_step_http_result(resume, &defer_until);
		if (r->output == NULL)
		{
			r->outcome = ORCH_STEP_DEFERRED;
			r->run_at = defer_until;
			r->error = psprintf("endpoint \"%s\" answered HTTP 429 (rate limited); deferred until %s",
								resume->endpoint, timestamptz_to_str(defer_until));
		}
		else
			r->outcome = ORCH_STEP_SUCCEEDED;
	}
	else if (condition != NULL && !orch_jsonpath_truthy(run->state, condition))
		r->outcome = ORCH_STEP_SKIPPED;
	else if (strcmp(r->kind, "http") == 0 || strcmp(r->kind, "notify") == 0)
	{
		Jsonb	   *message = NULL;
		TimestampTz defer_until;
		const char *reason;

		/* a notify step's message comes from its function */
		if (function != NULL)
			message = orch_step_sql_execute(function, scope, run->state, run->run_as, timeout_ms, &r->scope);
		r->request = orch_step_http_prepare(run->job, run->current_step, r->attempt, step,
											run->state, message, &defer_until, &reason);
		if (r->request == NULL)
		{
			r->outcome = ORCH_STEP_DEFERRED;
			r->run_at = defer_until;
			r->error = psprintf("%s; deferred until %s",
								strcmp(reason, "quiet_hours") == 0 ? "user is in quiet hours" :
								strcmp(reason, "rate_limit") == 0 ? "user reached max_notifications_per_hour" :
								reason,
								timestamptz_to_str(defer_until));
		}
		else
			r->outcome = ORCH_STEP_PARKED;
	}
	else
	{
		r->output = orch_step_sql_execute(function, scope, run->state, run->run_as, timeout_ms, &r->scope);
		r->outcome = ORCH_STEP_SUCCEEDED;
	}

	if (r->outcome == ORCH_STEP_SUCCEEDED && expect != NULL &&
		!orch_jsonpath_truthy(r->output, expect))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("output of step \"%s\" does not satisfy its expect path", r->step_name),
				 errdetail("expect: %s", expect)));

	/* follow-up events and the cost booked commit with the step, or not at all */
	if (r->outcome == ORCH_STEP_SUCCEEDED)
	{
		r->followups = orch_queue_followups(run->job, step, run->state, r->output);
		if (orch_jsonb_get_bool(step, "ai"))
			r->cost_usd = record_cost(run, r->step_name, r->output);
	}
}

/*
 * step_approved: the rep approved (or edited and approved) this step.
 */
static bool
step_approved(Jsonb *state, const char *step_name)
{
	Jsonb	   *decision = orch_jsonb_get(orch_jsonb_get(state, "approvals"), step_name);
	char	   *action = orch_jsonb_get_text(decision, "action");

	return action != NULL && (strcmp(action, "approve") == 0 || strcmp(action, "edit") == 0);
}

/*
 * open_approval opens the step's approval gate (orchestrator.open_approval)
 * and returns what the history records about it.
 */
static Jsonb *
open_approval(JobRun *run, Jsonb *step)
{
	Datum		args[4];
	bool		isnull;

	if (approval_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT4OID, JSONBOID, JSONBOID};

		approval_plan = orch_prepare_kept("SELECT orchestrator.open_approval($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&run->job->id);
	args[1] = Int32GetDatum(run->current_step);
	args[2] = JsonbPGetDatum(step);
	args[3] = JsonbPGetDatum(run->state);
	return DatumGetJsonbP(orch_exec_scalar(approval_plan, args, NULL, &isnull, "approval gate"));
}

/*
 * notify_failure queues the seed's Slack notice for a halted sequence
 * (orchestrator.failure_notice), in the job's transaction.
 */
static void
notify_failure(JobRun *run, OrchStepResult *r)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;

	if (failure_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, JSONBOID, TEXTOID, TEXTOID};

		failure_plan = orch_prepare_kept("SELECT orchestrator.failure_notice($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&run->job->id);
	args[1] = JsonbPGetDatum(run->state);
	args[2] = CStringGetTextDatum(r->step_name);
	args[3] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	nulls[3] = r->error ? ' ' : 'n';
	(void) orch_exec_scalar(failure_plan, args, nulls, &isnull, "failure notice");
}

/*
 * budget_allows asks orchestrator.budget_gate whether an ai step may run.
 */
static bool
budget_allows(JobRun *run)
{
	Datum		args[2];
	bool		isnull;

	if (budget_plan == NULL)
	{
		Oid			types[2] = {UUIDOID, JSONBOID};

		budget_plan = orch_prepare_kept("SELECT orchestrator.budget_gate($1, $2)", 2, types);
	}
	args[0] = UUIDPGetDatum(&run->job->id);
	args[1] = JsonbPGetDatum(run->state);
	return DatumGetBool(orch_exec_scalar(budget_plan, args, NULL, &isnull, "budget check"));
}

/*
 * record_cost books what an ai step reported spending (orchestrator.record_cost).
 */
static double
record_cost(JobRun *run, const char *step_name, Jsonb *output)
{
	Datum		args[4];
	bool		isnull;

	if (cost_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, JSONBOID, TEXTOID, JSONBOID};

		cost_plan = orch_prepare_kept("SELECT orchestrator.record_cost($1, $2, $3, $4)::float8", 4, types);
	}
	args[0] = UUIDPGetDatum(&run->job->id);
	args[1] = JsonbPGetDatum(run->state);
	args[2] = CStringGetTextDatum(step_name);
	args[3] = JsonbPGetDatum(output);
	return DatumGetFloat8(orch_exec_scalar(cost_plan, args, NULL, &isnull, "cost booking"));
}

PG_FUNCTION_INFO_V1(orch_run_claimed_job_sql);

/*
 * orchestrator.run_claimed_job(job_id, fencing_token): run a job claimed
 * with orchestrator.claim_jobs in the calling session, exactly as a worker
 * would.  For tests and tools.
 */
Datum
orch_run_claimed_job_sql(PG_FUNCTION_ARGS)
{
	OrchClaimedJob job;
	OrchHttpRequest *parked;

	memcpy(&job.id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	job.token = PG_GETARG_INT64(1);
	orch_run_job(&job, NULL, &parked);
	if (parked)
	{
		/* a session has no curl loop: leave the job for a worker to reclaim */
		orch_http_free(parked);
		ereport(NOTICE,
				(errmsg("job is waiting for an HTTP request that only a worker can send")));
	}
	PG_RETURN_VOID();
}
