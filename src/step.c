/*-------------------------------------------------------------------------
 *
 * step.c
 *	  Running a claimed job's steps: the step dispatcher.
 *
 * orch_run_job locks the job under its fencing token, then runs steps from
 * current_step until the job completes, fails, is deferred, parks on an
 * HTTP request, or the worker is asked to stop.  Before each step it
 * checks for a pause (flow.c), loads the context sources due (context.c)
 * and checks the gates (approval.c, budget.c); then it evaluates "condition" (false: skipped), dispatches on
 * "kind" ("sql": step_sql.c; "http", "notify": step_http.c; "signal",
 * "sleep", "fan_out": wait.c), checks
 * "expect", and asks policy.c where the job goes next (on_failure,
 * retries, the time slice).
 *
 * An http or notify step parks the job: its lease is stretched over the
 * request's timeout, the transaction commits, and worker.c sends the
 * request.  When the response is in, orch_run_job is called again with it
 * ("resume"), in a new short transaction under the same fencing token,
 * and the response becomes that step's result.
 *
 * Transactions: the caller (worker.c) opens one transaction for a batch of
 * jobs.  Each job runs in a subtransaction, and each step in a nested one,
 * so a failing step rolls back its own writes only, and an error outside
 * any step fails that job only; neither ends the worker.  Every change of
 * the job is a transition handed to job_state.c in the job's
 * subtransaction, so a step's result commits with its function's writes.
 * This file never writes a job itself.
 *
 * src/step.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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

#include "approval.h"
#include "budget.h"
#include "context.h"
#include "flow.h"
#include "followup.h"
#include "guc.h"
#include "job_state.h"
#include "policy.h"
#include "step.h"
#include "step_http.h"
#include "step_sql.h"
#include "util.h"
#include "wait.h"

static SPIPlanPtr load_plan = NULL;

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

/* One step's run: what is recorded of it, and what the loop does next. */
typedef struct StepResult
{
	OrchStepRecord rec;
	bool		interrupted;	/* cancelled by SIGTERM: nothing to record */
	bool		halted;			/* over budget: the whole sequence stops */
	OrchHttpRequest *request;	/* PARKED: the request to send */
} StepResult;

static bool load_job(const OrchClaimedJob *job, JobRun *run);
static void run_steps(JobRun *run);
static void run_job(void *arg);
static void park(JobRun *run, OrchHttpRequest *request);
static bool hold_if_paused(JobRun *run, Jsonb *step);
static void run_one_step(JobRun *run, Jsonb *step, StepResult *r);
static void step_body(void *arg);

/*
 * orch_run_job runs one claimed job as far as it goes in this transaction.
 * The caller has locked the job's row in this transaction (orch_job_lock,
 * for the whole batch), so only this transaction can change it until it
 * ends.
 */
void
orch_run_job(const OrchClaimedJob *job, OrchHttpRequest *resume, OrchHttpRequest **parked)
{
	JobRun		run;
	ErrorData  *edata;
	bool		own;

	memset(&run, 0, sizeof(run));
	run.job = job;
	run.resume = resume;
	own = orch_job_hold_begin();
	SPI_connect();
	edata = orch_in_subxact(run_job, &run);
	if (edata == NULL)
		*parked = run.parked;	/* only now is it the job's: its state is written */
	else
	{
		OrchJobTransition t;

		*parked = NULL;
		if (run.parked)
			orch_http_free(run.parked);
		ereport(WARNING,
				(errmsg("orchestrator job %s failed outside a step: %s",
						orch_uuid_str(&job->id), edata->message)));
		/* its step results rolled back with it */
		orch_job_hold_forget(&job->id);
		orch_job_worker_transition(&t, ORCH_TRANSITION_FAIL, job, ORCH_JOB_FAILED);
		t.error = edata->message;
		orch_job_transition(&t, 1);
	}
	SPI_finish();
	if (own)
		orch_job_hold_end();
}

/* run_job: the job's subtransaction */
static void
run_job(void *arg)
{
	JobRun	   *run = arg;
	OrchStepRequest *resumed = run->resume ? orch_step_request(run->resume) : NULL;

	if (!load_job(run->job, run))
		return;
	if (resumed && resumed->step_index != run->current_step)
		ereport(LOG,
				(errmsg("orchestrator discarded the response of step \"%s\" of job %s: the job moved on",
						resumed->step_name, orch_uuid_str(&run->job->id))));
	else
		run_steps(run);
}

/*
 * load_job reads the job's state and its pinned sequence version if this
 * worker still holds its lease (the row is locked already: the caller ran
 * orch_job_lock for the batch).  Returns false when the lease was lost
 * (reclaimed, cancelled or retried meanwhile).
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
			" WHERE j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'",
			2, types);
	}

	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int64GetDatum(job->token);
	ret = orch_execute_keyed(load_plan, args, NULL, false, 1, InvalidSnapshot);
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
		StepResult	r;
		OrchJobTransition t;
		Jsonb	   *state;

		CHECK_FOR_INTERRUPTS();

		/* a pause or drain (flow.c) holds the job before its next step */
		if (run->resume == NULL && hold_if_paused(run, step))
			break;

		/* context tiers 2 and 3 due before this step (context.c) */
		if (run->resume && orch_step_request(run->resume)->context_name)
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
		if (r.rec.outcome == ORCH_STEP_PARKED)
		{
			park(run, r.request);
			break;
		}

		orch_job_worker_transition(&t, ORCH_TRANSITION_STEP, run->job, r.rec.job_status);
		t.step = &r.rec;
		t.context = run->state;
		orch_job_transition(&t, 1);
		if (!t.applied)
		{
			/*
			 * The row is locked by this transaction since load_job, so only
			 * the step itself can have moved the job on (cancelled or
			 * retried it): its action stands, and the job is left alone.
			 */
			ereport(LOG,
					(errmsg("orchestrator job %s was cancelled or retried by its own step \"%s\"; the step's result is not recorded",
							orch_uuid_str(&run->job->id),
							r.rec.step_name)));
			break;
		}
		run->state = t.state;

		/* on_failure stop (or retries used up): the user hears why */
		if (r.rec.job_status == ORCH_JOB_FAILED && !r.halted &&
			!orch_is_engine_event(run->event_type, strlen(run->event_type)))
			orch_notify_failure(run->job, run->state, r.rec.step_name, r.rec.error);

		if (r.rec.job_status != ORCH_JOB_IN_PROGRESS)
			break;
		run->current_step = r.rec.next_step;
		run->attempts = r.rec.job_attempts;

		/* SIGTERM: stop between steps; the lease is handed back on exit */
		if (ShutdownRequestPending)
			break;

		/*
		 * Fairness (the seed's 150 s edge timeout): a job that has run for
		 * orchestrator.max_slice is checkpointed here, between steps, and
		 * queued again behind the jobs already due, as a continuation.
		 */
		if (orch_policy_slice_used(slice_start))
		{
			orch_job_worker_transition(&t, ORCH_TRANSITION_CONTINUE, run->job, ORCH_JOB_PENDING);
			t.step_index = run->current_step;
			t.note = orch_policy_continuation_note(run->current_step);
			orch_job_transition(&t, 1);
			if (t.applied)
				break;
		}
	}
}

/*
 * hold_if_paused defers the job at its next step, until orch_resume makes
 * it due again ("infinity"), when a pause covers it, or a drain and it has
 * run no step yet.  Not an attempt.  Returns whether it was held.
 */
static bool
hold_if_paused(JobRun *run, Jsonb *step)
{
	bool		starting = run->current_step == 0 && run->attempts == 0;
	char	   *why = orch_flow_paused(run->job, starting);
	OrchStepRecord r;
	OrchJobTransition t;

	if (why == NULL)
		return false;
	memset(&r, 0, sizeof(r));
	r.step_index = run->current_step;
	r.step_name = orch_jsonb_get_text(step, "name");
	r.kind = orch_jsonb_get_text(step, "kind");
	r.attempt = run->attempts + 1;
	r.started_at = GetCurrentTimestamp();
	r.outcome = ORCH_STEP_DEFERRED;
	r.error = psprintf("%s; held until orch_resume", why);
	r.run_at = DT_NOEND;
	orch_policy_stay(&r, run->current_step, run->attempts, ORCH_JOB_PENDING);
	orch_job_worker_transition(&t, ORCH_TRANSITION_STEP, run->job, ORCH_JOB_PENDING);
	t.step = &r;
	t.context = run->state;
	orch_job_transition(&t, 1);
	return true;
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
	OrchJobTransition t;

	orch_job_worker_transition(&t, ORCH_TRANSITION_PARK, run->job, ORCH_JOB_IN_PROGRESS);
	t.lease_ms = request->timeout_ms + orch_lease_ms;
	orch_job_transition(&t, 1);
	if (t.applied)
		run->parked = request;
	else
		orch_http_free(request);
}

/* A step's run, as step_body sees it in its subtransaction. */
typedef struct StepCall
{
	JobRun	   *run;
	Jsonb	   *step;
	StepResult *r;
} StepCall;

/*
 * run_one_step runs the step at run->current_step in a subtransaction and
 * decides, from its outcome and on_failure, where the job goes next.
 */
static void
run_one_step(JobRun *run, Jsonb *step, StepResult *res)
{
	char	   *condition = orch_jsonb_get_text(step, "condition");
	OrchHttpRequest *resume = run->resume;
	OrchStepRecord *r = &res->rec;
	StepCall	call = {run, step, res};
	ErrorData  *edata;

	memset(res, 0, sizeof(*res));
	r->step_index = run->current_step;
	r->step_name = orch_jsonb_get_text(step, "name");
	r->kind = orch_jsonb_get_text(step, "kind");
	r->attempt = resume ? orch_step_request(resume)->attempt : run->attempts + 1;
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
		orch_approval_expired(run->state, r->step_name))
	{
		r->outcome = ORCH_STEP_FAILED;
		r->error = pstrdup("nobody answered the approval request in time (its on_timeout is fail)");
		r->finished_at = GetCurrentTimestamp();
		orch_policy_after_step(step, r, run->current_step, run->nsteps, run->attempts);
		return;
	}
	if (!resume && orch_jsonb_get_bool(step, "requires_approval") &&
		!orch_approval_granted(run->state, r->step_name) &&
		(condition == NULL || orch_jsonpath_truthy(run->state, condition)))
	{
		r->output = orch_approval_open(run->job, run->current_step, step, run->state);
		r->outcome = ORCH_STEP_AWAITING;
		orch_policy_stay(r, run->current_step, run->attempts, ORCH_JOB_AWAITING_APPROVAL);
		return;
	}

	/*
	 * The seed: check the budget before every AI-intensive step; over it,
	 * halt the whole sequence at once.  Outside the step's subtransaction,
	 * so the once-per-period notice it queues stays.
	 */
	if (!resume && orch_jsonb_get_bool(step, "ai") && !orch_budget_allows(run->job, run->state))
	{
		r->outcome = ORCH_STEP_FAILED;
		res->halted = true;
		r->error = pstrdup("AI budget limit reached: sequence halted until the next billing period");
		orch_policy_stay(r, run->current_step, run->attempts, ORCH_JOB_FAILED);
		return;
	}

	edata = orch_in_subxact(step_body, &call);
	if (edata)
	{
		r->outcome = ORCH_STEP_FAILED;
		res->interrupted = (ShutdownRequestPending && edata->sqlerrcode == ERRCODE_QUERY_CANCELED);
		/* rolled back with the step: its output, follow-ups and cost are not */
		r->output = NULL;
		r->followups = NULL;
		r->cost_usd = 0;
		if (res->request)
		{
			orch_http_free(res->request);
			res->request = NULL;
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
	if (r->outcome != ORCH_STEP_PARKED)
		orch_policy_after_step(step, r, run->current_step, run->nsteps, run->attempts);
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
	OrchStepRecord *r = &call->r->rec;
	OrchHttpRequest *resume = run->resume;
	char	   *condition = orch_jsonb_get_text(step, "condition");
	char	   *expect = orch_jsonb_get_text(step, "expect");

	if (resume)
		orch_step_http_end(resume, r);	/* its condition held when it was sent */
	else if (condition != NULL && !orch_jsonpath_truthy(run->state, condition))
		r->outcome = ORCH_STEP_SKIPPED;
	else if (strcmp(r->kind, "http") == 0 || strcmp(r->kind, "notify") == 0)
		call->r->request = orch_step_http_begin(run->job, step, run->state, run->run_as, r);
	else if (strcmp(r->kind, "signal") == 0 || strcmp(r->kind, "sleep") == 0 ||
			 strcmp(r->kind, "fan_out") == 0)
		orch_step_wait(run->job, step, run->state, r);
	else
	{
		r->output = orch_step_sql_execute(orch_jsonb_get_text(step, "function"),
										  orch_jsonb_get_text(step, "scope"), run->state, run->run_as,
										  orch_jsonb_get_int(step, "timeout_ms", 0), &r->scope);
		r->outcome = ORCH_STEP_SUCCEEDED;
	}

	/* nothing nested deeper than max_json_depth gets into the state */
	if (r->outcome == ORCH_STEP_SUCCEEDED)
		orch_check_json_depth(r->output, "output of step", r->step_name);

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
			r->cost_usd = orch_budget_record_cost(run->job, run->state, r->step_name, r->output);
	}
}
