/*-------------------------------------------------------------------------
 *
 * job_state.c
 *	  The one owner of job state: every write of a job's status, lease and
 *	  fencing token, and every step_history row.
 *
 * A job's status moves only along the edges of the legality table below
 * (drawn in src/README.md).  Single-job changes are OrchJobTransitions,
 * values that name the job and everything they change, applied (one, or
 * a batch) by orch_job_transition;
 * set-based ones are the claim (pending -> in_progress), the reclaim of
 * lapsed leases (in_progress -> pending, or failed past
 * orchestrator.max_reclaims) and the release on SIGTERM (in_progress ->
 * pending).  Each transition writes the job's row and its history row in
 * one statement.
 *
 * Fencing: every claim bumps fencing_token; the worker's transitions
 * (step, context, park, continue, fail) apply only while the job is still
 * in_progress under the token the worker claimed it with, so a worker
 * that lost its lease writes nothing.  Operator transitions (cancel,
 * retry, an approval decision) are made by a caller holding the row lock
 * and apply only while the job is still in the status the caller saw;
 * cancel and retry take a new token, fencing off any worker still running.
 *
 * While a job stays in_progress, its updates leave every indexed column
 * alone (status, run_at, lease_expires_at, parent_job_id), so per-step
 * writes are HOT; only the final transition touches the indexes.
 *
 * Everything here runs in the caller's transaction with SPI connected;
 * plans are prepared once per process and kept.
 *
 * src/job_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "job_state.h"
#include "util.h"
#include "wake.h"

static const char *const status_names[ORCH_JOB_NSTATUS] = {
	"pending", "in_progress", "awaiting_approval", "completed", "failed", "cancelled"
};

/*
 * legal[from][to]: the edges of the state diagram.
 *   pending           -> in_progress (claim), cancelled, pending (retry)
 *   in_progress       -> anything: a step's result, a gate, a deferral or
 *                        retry, a time slice, a reclaim, a release, cancel
 *   awaiting_approval -> pending (approve, edit, skip, retry), completed
 *                        (skip of the last step), cancelled
 *   completed, failed, cancelled -> pending (retry) only
 */
static const bool legal[ORCH_JOB_NSTATUS][ORCH_JOB_NSTATUS] = {
	/* to:  pending in_progress awaiting completed failed cancelled */
	{true, true, false, false, false, true},	/* from pending */
	{true, true, true, true, true, true},	/* from in_progress */
	{true, false, false, true, false, true},	/* from awaiting_approval */
	{true, false, false, false, false, false},	/* from completed */
	{true, false, false, false, false, false},	/* from failed */
	{true, false, false, false, false, false},	/* from cancelled */
};

/* the columns every history row names */
#define HISTORY "INSERT INTO orchestrator.step_history" \
	" (job_id, org_id, step_index, step_name, kind, attempt, outcome, output, error," \
	"  started_at, finished_at, worker_pid, fencing_token, http_status, scope)"

#define NARGS 29

static SPIPlanPtr transition_plan = NULL;
static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr reclaim_plan = NULL;
static SPIPlanPtr release_plan = NULL;

OrchJobStatus
orch_job_status_from_name(const char *name)
{
	for (int i = 0; i < ORCH_JOB_NSTATUS; i++)
		if (strcmp(name, status_names[i]) == 0)
			return (OrchJobStatus) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized job status \"%s\"", name),
			 errhint("A job is pending, in_progress, awaiting_approval, completed, failed or cancelled.")));
	return ORCH_JOB_PENDING;	/* keep compiler quiet */
}

/*
 * allowed: the edge is in the diagram, and this kind of transition may
 * take it.  The worker's kinds start from in_progress under the lease: a
 * park or a context source stays there, a continuation goes back to
 * pending, a failure outside a step fails the job, a step result may go
 * anywhere the diagram allows.  An operator never grants a lease and ends
 * a job only by cancelling it, or by skipping the last step of one that
 * awaits approval.
 */
static bool
allowed(const OrchJobTransition *t)
{
	if (!legal[t->from][t->to])
		return false;
	switch (t->kind)
	{
		case ORCH_TRANSITION_STEP:
			return t->from == ORCH_JOB_IN_PROGRESS;
		case ORCH_TRANSITION_CONTEXT:
		case ORCH_TRANSITION_PARK:
			return t->from == ORCH_JOB_IN_PROGRESS && t->to == ORCH_JOB_IN_PROGRESS;
		case ORCH_TRANSITION_CONTINUE:
			return t->from == ORCH_JOB_IN_PROGRESS && t->to == ORCH_JOB_PENDING;
		case ORCH_TRANSITION_FAIL:
			return t->from == ORCH_JOB_IN_PROGRESS && t->to == ORCH_JOB_FAILED;
		case ORCH_TRANSITION_OPERATOR:
			return t->to == ORCH_JOB_PENDING || t->to == ORCH_JOB_CANCELLED ||
				(t->to == ORCH_JOB_COMPLETED && t->from == ORCH_JOB_AWAITING_APPROVAL);
	}
	return false;
}

static const char *
outcome_name(OrchStepOutcome o)
{
	static const char *const names[] = {
		"succeeded", "skipped", "failed", "retry_scheduled", "deferred", "awaiting_approval"
	};

	if (o == ORCH_STEP_PARKED)
		elog(ERROR, "a parked step has no result to record");
	return names[o];
}

/*
 * The one statement every single-job transition runs.  The job's row
 * changes only while it is in the expected status (and, for the worker's
 * kinds, under the expected fencing token); its state is folded by the
 * transition's op ("fold": a step result through orchestrator.advance_state;
 * "source": a context source through orchestrator.with_context_source;
 * otherwise the state given, or none); the lease survives only while the
 * job stays in_progress; and a history row is written unless the
 * transition has no history kind (a park).  Output is stripped of
 * transcripts and the error redacted once for both row and history.
 */
static const char *const transition_sql =
"WITH r AS (SELECT orchestrator.without_transcripts($9) AS output, orchestrator.redact($19) AS error),"
" u AS ("
"  UPDATE orchestrator.sequence_jobs j SET"
"    status = $4,"
"    context = CASE $5"
"      WHEN 'fold' THEN orchestrator.advance_state(j.context, $7, $8, r.output, $10, $11, $12, $13::numeric)"
"      WHEN 'source' THEN orchestrator.with_context_source(j.context, $29, $7, r.output, r.error)"
"      ELSE COALESCE($6, j.context) END,"
"    current_step = COALESCE($11, j.current_step), attempts = COALESCE($14, j.attempts),"
"    reclaims = COALESCE($15, j.reclaims), run_at = COALESCE($16, j.run_at),"
"    fencing_token = j.fencing_token + CASE WHEN $17 THEN 1 ELSE 0 END,"
"    lease_owner = CASE WHEN $4 = 'in_progress' THEN j.lease_owner END,"
"    lease_expires_at = CASE WHEN $4 = 'in_progress' THEN COALESCE(pg_catalog.clock_timestamp()"
"                       + pg_catalog.make_interval(secs => $18 / 1000.0), j.lease_expires_at) END,"
"    last_error = CASE WHEN $20 THEN NULL WHEN $5 = 'source' THEN j.last_error"
"                      ELSE COALESCE(r.error, j.last_error) END,"
"    finished_at = CASE WHEN $4 IN ('completed', 'failed', 'cancelled') THEN pg_catalog.clock_timestamp() END,"
"    updated_at = pg_catalog.clock_timestamp()"
"  FROM r WHERE j.id = $1 AND j.status = $3 AND ($2 IS NULL OR j.fencing_token = $2)"
"  RETURNING j.id, j.org_id, j.context, j.current_step, j.fencing_token),"
" h AS (" HISTORY
"  SELECT u.id, u.org_id, COALESCE($22, u.current_step),"
"         CASE WHEN $5 = 'source' THEN 'context:' || $7 ELSE $7 END, $21, COALESCE($23, 1), $8,"
"         CASE WHEN $5 = 'source' THEN pg_catalog.jsonb_build_object('tier', $29, 'source', $7,"
"                'bytes', pg_catalog.octet_length(COALESCE(r.output, 'null'::jsonb)::text))"
"              ELSE r.output END,"
"         COALESCE(r.error, $28), COALESCE($24, pg_catalog.clock_timestamp()),"
"         COALESCE($25, pg_catalog.clock_timestamp()), pg_catalog.pg_backend_pid(), u.fencing_token, $26, $27"
"  FROM u, r WHERE $21 IS NOT NULL)"
" SELECT u.context FROM u";

/*
 * fill_args turns a transition into the statement's arguments: the job
 * and where it must be, then what each kind changes and records.
 */
static void
fill_args(const OrchJobTransition *t, OrchArgs *a)
{
	const OrchStepRecord *r = t->step;

	orch_args_init(a, NARGS);
	orch_arg(a, 1, UUIDPGetDatum(&t->job_id));
	if (t->kind != ORCH_TRANSITION_OPERATOR)
		orch_arg(a, 2, Int64GetDatum(t->token));
	orch_arg_text(a, 3, status_names[t->from]);
	orch_arg_text(a, 4, status_names[t->to]);
	orch_arg(a, 17, BoolGetDatum(t->new_token));
	orch_arg(a, 20, BoolGetDatum(t->clear_error));

	switch (t->kind)
	{
		case ORCH_TRANSITION_STEP:
			orch_arg_text(a, 5, "fold");
			orch_arg_text(a, 7, r->step_name);
			orch_arg_text(a, 8, outcome_name(r->outcome));
			orch_arg_jsonb(a, 9, r->output);
			orch_arg(a, 10, Float8GetDatum((double) (r->finished_at - r->started_at) / 1000.0));
			orch_arg_int(a, 11, r->next_step);
			orch_arg_jsonb(a, 12, r->followups);
			orch_arg(a, 13, Float8GetDatum(r->cost_usd));
			orch_arg_int(a, 14, r->job_attempts);
			orch_arg_time(a, 16, r->run_at);
			orch_arg_text(a, 19, r->error);
			orch_arg_text(a, 21, r->kind);
			orch_arg_int(a, 22, r->step_index);
			orch_arg_int(a, 23, r->attempt);
			orch_arg_time(a, 24, r->started_at);
			orch_arg_time(a, 25, r->finished_at);
			if (r->http_status)
				orch_arg(a, 26, Int32GetDatum((int32) r->http_status));
			orch_arg_text(a, 27, r->scope);
			break;
		case ORCH_TRANSITION_CONTEXT:
			orch_arg_text(a, 5, "source");
			orch_arg_text(a, 7, t->name);
			orch_arg_text(a, 8, t->error ? "failed" : "succeeded");
			orch_arg_jsonb(a, 9, t->data);
			orch_arg_text(a, 19, t->error);
			orch_arg_text(a, 21, "context");
			orch_arg_int(a, 22, t->step_index);
			orch_arg_time(a, 24, t->started_at);
			if (t->http_status)
				orch_arg(a, 26, Int32GetDatum((int32) t->http_status));
			orch_arg(a, 29, Int32GetDatum(t->tier));
			break;
		case ORCH_TRANSITION_PARK:
			orch_arg(a, 18, Float8GetDatum((double) t->lease_ms));
			break;
		case ORCH_TRANSITION_CONTINUE:
			orch_arg_time(a, 16, GetCurrentTimestamp());
			orch_arg_text(a, 8, "continuation");
			orch_arg_text(a, 21, "engine");
			orch_arg_int(a, 22, t->step_index);
			orch_arg_text(a, 28, t->note);
			break;
		case ORCH_TRANSITION_FAIL:
			orch_arg_text(a, 8, "failed");
			orch_arg_text(a, 19, t->error);
			orch_arg_text(a, 21, "engine");
			break;
		case ORCH_TRANSITION_OPERATOR:
			orch_arg_jsonb(a, 6, t->context);
			orch_arg_text(a, 7, t->step_name);
			orch_arg_text(a, 8, t->outcome);
			orch_arg_jsonb(a, 9, t->output);
			orch_arg_int(a, 11, t->current_step);
			orch_arg_int(a, 14, t->attempts);
			orch_arg_int(a, 15, t->reclaims);
			if (t->to == ORCH_JOB_PENDING)
				orch_arg_time(a, 16, GetCurrentTimestamp());
			orch_arg_text(a, 21, t->history_kind);
			orch_arg_int(a, 22, t->step_index);
			orch_arg_text(a, 28, t->note);
			break;
	}
}

/*
 * apply runs one transition's statement and reads what it did.
 */
static void
apply(OrchJobTransition *t)
{
	OrchArgs	a;
	int			ret;

	fill_args(t, &a);
	ret = SPI_execute_plan(transition_plan, a.values, a.nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator job transition failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
	t->state = NULL;
	if (t->applied && (t->kind == ORCH_TRANSITION_STEP || t->kind == ORCH_TRANSITION_CONTEXT))
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		t->state = isnull ? NULL : DatumGetJsonbP(d);
	}

	/*
	 * A job put back to pending now wakes the workers once this commits; a
	 * step's retry or deferral waits for its run_at, and its worker looks
	 * for more work after every batch anyway.
	 */
	if (t->applied && t->to == ORCH_JOB_PENDING && t->kind != ORCH_TRANSITION_STEP)
		orch_wake_at_commit();
}

/*
 * orch_job_worker_transition starts a transition of kind that a worker
 * makes of the job it holds: from in_progress, under its lease's fencing
 * token, to "to".  The caller fills in what the kind records.
 */
void
orch_job_worker_transition(OrchJobTransition *t, OrchTransitionKind kind, const OrchClaimedJob *job,
						   OrchJobStatus to)
{
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->job_id = job->id;
	t->token = job->token;
	t->from = ORCH_JOB_IN_PROGRESS;
	t->to = to;
}

/*
 * orch_job_transition applies n transitions (of different jobs), in order,
 * after checking that each edge exists and that its kind may take it; an
 * illegal one raises an ERROR before anything is written.  Each
 * transition's applied says whether its job was where it expected it;
 * nothing is written for it otherwise.  For a step result or a context
 * source, state is the job's new state (other kinds leave it NULL rather
 * than fetch a state nobody reads).  Today's callers hand it one
 * transition at a time; every kind runs the same statement, so a batch can
 * become one statement over arrays of its arguments.
 */
void
orch_job_transition(OrchJobTransition *t, int n)
{
	for (int i = 0; i < n; i++)
		if (!allowed(&t[i]))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("job %s cannot go from %s to %s", orch_uuid_str(&t[i].job_id),
							status_names[t[i].from], status_names[t[i].to])));

	if (transition_plan == NULL)
	{
		Oid			types[NARGS] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID,
			TEXTOID, JSONBOID, FLOAT8OID, INT4OID, JSONBOID, FLOAT8OID, INT4OID, INT4OID,
			TIMESTAMPTZOID, BOOLOID, FLOAT8OID, TEXTOID, BOOLOID, TEXTOID, INT4OID, INT4OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, TEXTOID, TEXTOID, INT4OID};

		transition_plan = orch_prepare_kept(transition_sql, NARGS, types);
	}
	for (int i = 0; i < n; i++)
		apply(&t[i]);
}

/*
 * orch_job_create inserts a new pending job (transcripts stripped from
 * its payload, its initial state built by orchestrator.initial_state), its
 * event_log row (accepted, or deferred to run_at for quiet hours) and, for
 * a follow-up, its link in the parent's event_chain.children: one
 * statement, on the submit path.
 */
pg_uuid_t
orch_job_create(Datum org_id, Datum user_id, Datum type, Datum source, int32 version,
				TimestampTz run_at, Jsonb *payload, Datum parent_job_id, bool has_parent,
				int32 chain_depth, Datum dedupe_hash)
{
	Datum		args[10];
	char		n[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	bool		isnull;
	pg_uuid_t	id;

	if (create_plan == NULL)
	{
		Oid			types[10] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, UUIDOID, INT4OID, UUIDOID};

		create_plan = orch_prepare_kept(
			"WITH n AS (SELECT pg_catalog.gen_random_uuid() AS id, orchestrator.without_transcripts($7) AS payload),"
			" j AS (INSERT INTO orchestrator.sequence_jobs"
			"        (id, org_id, user_id, event_type, event_source, sequence_version, run_at,"
			"         context, trigger_payload, event_chain, parent_job_id, chain_depth)"
			"       SELECT n.id, $1, $2, $3, $4, $5, $6,"
			"              orchestrator.initial_state(n.id, $3, $4, $1, $2, n.payload, $8, $9),"
			"              n.payload,"
			"              pg_catalog.jsonb_build_object('parent', $8, 'children', '[]'::jsonb), $8, $9"
			"       FROM n RETURNING id, run_at),"
			" l AS (INSERT INTO orchestrator.event_log"
			"        (org_id, user_id, event_type, event_source, outcome, reason, job_id, run_at,"
			"         parent_job_id, dedupe_hash)"
			"       SELECT $1, $2, $3, $4,"
			"              CASE WHEN j.run_at > pg_catalog.now() THEN 'deferred' ELSE 'accepted' END,"
			"              CASE WHEN j.run_at > pg_catalog.now() THEN 'quiet_hours' END,"
			"              j.id, j.run_at, $8, $10 FROM j),"
			" p AS (UPDATE orchestrator.sequence_jobs pj"
			"       SET event_chain = pg_catalog.jsonb_set(pj.event_chain, '{children}',"
			"                         COALESCE(pj.event_chain->'children', '[]') || pg_catalog.to_jsonb(j.id))"
			"       FROM j WHERE pj.id = $8)"
			" SELECT id FROM j",
			10, types);
	}
	args[0] = org_id;
	args[1] = user_id;
	args[2] = type;
	args[3] = source;
	args[4] = Int32GetDatum(version);
	args[5] = TimestampTzGetDatum(run_at);
	args[6] = JsonbPGetDatum(payload);
	args[7] = has_parent ? parent_job_id : (Datum) 0;
	n[7] = has_parent ? ' ' : 'n';
	args[8] = Int32GetDatum(chain_depth);
	args[9] = dedupe_hash;
	ret = SPI_execute_plan(create_plan, args, n, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator enqueue failed: %s", SPI_result_code_string(ret));
	memcpy(&id, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
		   sizeof(pg_uuid_t));
	orch_wake_at_commit();
	return id;
}

/*
 * orch_job_claim leases up to max runnable jobs (pending, run_at come) to
 * this process, oldest run_at first, with FOR UPDATE SKIP LOCKED so
 * concurrent claimers never take the same row; each claim bumps the
 * fencing token.  On a job's first claim its tier 1 context is loaded into
 * the state.  Fills jobs[] and returns how many.
 */
int
orch_job_claim(OrchClaimedJob *jobs, int max, long lease_ms)
{
	Datum		args[3];
	int			ret;

	if (claim_plan == NULL)
	{
		Oid			types[3] = {INT4OID, INT4OID, FLOAT8OID};

		claim_plan = orch_prepare_kept(
			"WITH c AS (SELECT j.id FROM orchestrator.sequence_jobs j"
			"           WHERE j.status = 'pending' AND j.run_at <= pg_catalog.now()"
			"           ORDER BY j.run_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
			" UPDATE orchestrator.sequence_jobs j"
			" SET status = 'in_progress', lease_owner = $2,"
			"     lease_expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
			"     fencing_token = j.fencing_token + 1,"
			"     started_at = COALESCE(j.started_at, pg_catalog.clock_timestamp()),"
			"     updated_at = pg_catalog.clock_timestamp(),"
			"     context = CASE WHEN (j.context->'context') ? 'tier1' THEN j.context"
			"               ELSE j.context || pg_catalog.jsonb_build_object("
			"                      'context', (j.context->'context') || pg_catalog.jsonb_build_object("
			"                                 'tier1', orchestrator.load_tier1(j.org_id, j.user_id)),"
			"                      'started_at', pg_catalog.clock_timestamp()) END"
			" FROM c WHERE j.id = c.id"
			" RETURNING j.id, j.fencing_token",
			3, types);
	}
	args[0] = Int32GetDatum(max);
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Float8GetDatum((double) lease_ms);
	ret = SPI_execute_plan(claim_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "orchestrator claim failed: %s", SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed && i < (uint64) max; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		memcpy(&jobs[i].id, DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		jobs[i].token = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	return (int) Min(SPI_processed, (uint64) max);
}

/*
 * orch_job_reclaim_expired returns up to 100 jobs whose lease has lapsed
 * to pending, or fails those whose workers died while running them more
 * than max_reclaims times, and records each in the history.
 */
int
orch_job_reclaim_expired(int max_reclaims)
{
	Datum		args[2];
	int			ret;

	if (reclaim_plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT4OID};

		reclaim_plan = orch_prepare_kept(
			"WITH r AS (SELECT j.id, j.lease_owner FROM orchestrator.sequence_jobs j"
			"           WHERE j.status = 'in_progress' AND j.lease_expires_at < pg_catalog.now()"
			"           ORDER BY j.lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED),"
			" u AS (UPDATE orchestrator.sequence_jobs j"
			"       SET status = CASE WHEN j.reclaims >= $2 THEN 'failed' ELSE 'pending' END,"
			"           reclaims = j.reclaims + 1,"
			"           last_error = CASE WHEN j.reclaims >= $2"
			"                        THEN 'given up: its worker died while running it ' || (j.reclaims + 1) || ' times'"
			"                        ELSE j.last_error END,"
			"           finished_at = CASE WHEN j.reclaims >= $2 THEN pg_catalog.clock_timestamp() END,"
			"           run_at = pg_catalog.now(), lease_owner = NULL,"
			"           lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			"       FROM r WHERE j.id = r.id"
			"       RETURNING j.id, j.org_id, j.current_step, j.fencing_token, j.status, j.last_error, r.lease_owner)"
			" " HISTORY
			" SELECT u.id, u.org_id, u.current_step, NULL, 'engine', 1,"
			"        CASE u.status WHEN 'failed' THEN 'failed' ELSE 'lease_expired' END, NULL,"
			"        CASE u.status WHEN 'failed' THEN u.last_error"
			"             ELSE 'lease of worker pid ' || COALESCE(u.lease_owner::text, '?') || ' expired; job returned to the queue' END,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), $1, u.fencing_token, NULL, NULL FROM u",
			2, types);
	}
	args[0] = Int32GetDatum(MyProcPid);
	args[1] = Int32GetDatum(max_reclaims);
	ret = SPI_execute_plan(reclaim_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator reclaim failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		orch_wake_at_commit();
	return (int) SPI_processed;
}

/*
 * orch_job_release hands this process's leased jobs back to the queue
 * (SIGTERM); the next claim bumps the fencing token as usual.
 */
int
orch_job_release(void)
{
	Datum		args[1];
	int			ret;

	if (release_plan == NULL)
	{
		Oid			types[1] = {INT4OID};

		release_plan = orch_prepare_kept(
			"UPDATE orchestrator.sequence_jobs j"
			" SET status = 'pending', run_at = pg_catalog.now(), lease_owner = NULL,"
			"     lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			" WHERE j.status = 'in_progress' AND j.lease_owner = $1",
			1, types);
	}
	args[0] = Int32GetDatum(MyProcPid);
	ret = SPI_execute_plan(release_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator lease release failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		orch_wake_at_commit();
	return (int) SPI_processed;
}
