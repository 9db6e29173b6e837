/*-------------------------------------------------------------------------
 *
 * job_state.c
 *	  The one owner of job state: every write of a job's status, lease and
 *	  fencing token, and every step_history row.
 *
 * A job's status moves only along the edges of the legality table below
 * (drawn in src/README.md).  Single-job changes are OrchJobTransitions,
 * applied by orch_job_transition (or orch_job_transitions, for a batch);
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
#include "fmgr.h"
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

/* the columns every history row names, and the lease-keeping rule */
#define HISTORY "INSERT INTO orchestrator.step_history" \
	" (job_id, org_id, step_index, step_name, kind, attempt, outcome, output, error," \
	"  started_at, finished_at, worker_pid, fencing_token, http_status, scope)"
#define WORKER_OWNS "j.id = $1 AND j.fencing_token = $2 AND j.status = 'in_progress'"

static SPIPlanPtr step_plan = NULL;
static SPIPlanPtr context_plan = NULL;
static SPIPlanPtr park_plan = NULL;
static SPIPlanPtr continue_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr operator_plan = NULL;
static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr reclaim_plan = NULL;
static SPIPlanPtr release_plan = NULL;

static void apply_step(OrchJobTransition *t);
static void apply_context(OrchJobTransition *t);
static void apply_park(OrchJobTransition *t);
static void apply_continue(OrchJobTransition *t);
static void apply_fail(OrchJobTransition *t);
static void apply_operator(OrchJobTransition *t);

const char *
orch_job_status_name(OrchJobStatus status)
{
	Assert(status >= 0 && status < ORCH_JOB_NSTATUS);
	return status_names[status];
}

static OrchJobStatus
status_from_name(const char *name)
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

bool
orch_job_transition_legal(OrchJobStatus from, OrchJobStatus to)
{
	return legal[from][to];
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

/* Datum of a string argument, or a null */
static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

static Datum
jsonb_or_null(Jsonb *j, char *null)
{
	*null = j ? ' ' : 'n';
	return j ? JsonbPGetDatum(j) : (Datum) 0;
}

/*
 * orch_job_transition applies one transition, after checking that its edge
 * exists and that its kind may take it.  t->applied says whether the job
 * was where the transition expected it; nothing is written otherwise.
 */
void
orch_job_transition(OrchJobTransition *t)
{
	bool		worker = (t->kind != ORCH_TRANSITION_OPERATOR);

	if (!legal[t->from][t->to] || (worker && t->from != ORCH_JOB_IN_PROGRESS) ||
		(!worker && t->to == ORCH_JOB_IN_PROGRESS))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job %s cannot go from %s to %s", orch_uuid_str(&t->job_id),
						status_names[t->from], status_names[t->to])));
	t->applied = false;
	t->state = NULL;
	switch (t->kind)
	{
		case ORCH_TRANSITION_STEP:
			apply_step(t);
			break;
		case ORCH_TRANSITION_CONTEXT:
			apply_context(t);
			break;
		case ORCH_TRANSITION_PARK:
			apply_park(t);
			break;
		case ORCH_TRANSITION_CONTINUE:
			apply_continue(t);
			break;
		case ORCH_TRANSITION_FAIL:
			apply_fail(t);
			break;
		case ORCH_TRANSITION_OPERATOR:
			apply_operator(t);
			break;
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
 * orch_job_transitions applies a batch of transitions, in order.
 */
void
orch_job_transitions(OrchJobTransition *t, int n)
{
	for (int i = 0; i < n; i++)
		orch_job_transition(&t[i]);
}

/* the first column of the statement's one row, or NULL when none */
static Jsonb *
returned_state(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return NULL;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : DatumGetJsonbP(d);
}

/*
 * apply_step records a step attempt: the state folded by
 * orchestrator.advance_state, next step, status, retry time, and the
 * history row, with the output's transcripts dropped and the error
 * redacted once for both.
 */
static void
apply_step(OrchJobTransition *t)
{
	const OrchStepRecord *r = t->step;
	Datum		args[20];
	char		n[20];
	int			ret;

	if (step_plan == NULL)
	{
		Oid			types[20] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, JSONBOID, FLOAT8OID,
			INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID, INT4OID, TEXTOID, TEXTOID, INT4OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, JSONBOID, FLOAT8OID, TEXTOID};

		step_plan = orch_prepare_kept(
			"WITH r AS (SELECT orchestrator.without_transcripts($5) AS output, orchestrator.redact($12) AS error),"
			" u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET"
			"    context = orchestrator.advance_state(j.context, $3, $4, r.output, $6, $7, $18, $19::numeric),"
			"    current_step = $7, attempts = $8, status = $9,"
			"    run_at = COALESCE($10, j.run_at),"
			"    lease_owner = CASE WHEN $9 = 'in_progress' THEN j.lease_owner END,"
			"    lease_expires_at = CASE WHEN $9 = 'in_progress' THEN j.lease_expires_at END,"
			"    last_error = COALESCE(r.error, j.last_error),"
			"    finished_at = CASE WHEN $9 IN ('completed', 'failed') THEN pg_catalog.clock_timestamp() END,"
			"    updated_at = pg_catalog.clock_timestamp()"
			"  FROM r WHERE " WORKER_OWNS
			"  RETURNING j.id, j.org_id, j.context),"
			" h AS (" HISTORY
			"  SELECT u.id, u.org_id, $11, $3, $13, $14, $4, r.output, r.error, $15, $16,"
			"         pg_catalog.pg_backend_pid(), $2, $17, $20 FROM u, r)"
			" SELECT u.context FROM u",
			20, types);
	}

	memset(n, ' ', sizeof(n));
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = Int64GetDatum(t->token);
	args[2] = CStringGetTextDatum(r->step_name);
	args[3] = CStringGetTextDatum(outcome_name(r->outcome));
	args[4] = jsonb_or_null(r->output, &n[4]);
	args[5] = Float8GetDatum((double) (r->finished_at - r->started_at) / 1000.0);
	args[6] = Int32GetDatum(r->next_step);
	args[7] = Int32GetDatum(r->job_attempts);
	args[8] = CStringGetTextDatum(status_names[t->to]);
	args[9] = TimestampTzGetDatum(r->run_at);
	n[9] = r->run_at ? ' ' : 'n';
	args[10] = Int32GetDatum(r->step_index);
	args[11] = text_or_null(r->error, &n[11]);
	args[12] = CStringGetTextDatum(r->kind);
	args[13] = Int32GetDatum(r->attempt);
	args[14] = TimestampTzGetDatum(r->started_at);
	args[15] = TimestampTzGetDatum(r->finished_at);
	args[16] = Int32GetDatum((int32) r->http_status);
	n[16] = r->http_status ? ' ' : 'n';
	args[17] = jsonb_or_null(r->followups, &n[17]);
	args[18] = Float8GetDatum(r->cost_usd);
	args[19] = text_or_null(r->scope, &n[19]);

	ret = SPI_execute_plan(step_plan, args, n, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator step write-back failed: %s", SPI_result_code_string(ret));
	t->state = returned_state();
	t->applied = (t->state != NULL);
}

/*
 * apply_context stores one context source's result (or null and its
 * error) under state.context.tier<N>.<name>, with a history row of kind
 * context.
 */
static void
apply_context(OrchJobTransition *t)
{
	Datum		args[9];
	char		n[9];
	int			ret;

	if (context_plan == NULL)
	{
		Oid			types[9] = {UUIDOID, INT8OID, INT4OID, INT4OID, TEXTOID, JSONBOID, TEXTOID,
		TIMESTAMPTZOID, INT4OID};

		context_plan = orch_prepare_kept(
			"WITH r AS (SELECT orchestrator.without_transcripts($6) AS data, orchestrator.redact($7) AS error,"
			"                  'tier' || $4 AS tier),"
			" u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET"
			"    context = pg_catalog.jsonb_set("
			"      CASE WHEN r.error IS NULL THEN j.context"
			"           ELSE pg_catalog.jsonb_set(j.context, '{context,errors}',"
			"                  COALESCE(j.context->'context'->'errors', '{}')"
			"                  || pg_catalog.jsonb_build_object($5, r.error)) END,"
			"      ARRAY['context', r.tier],"
			"      COALESCE(j.context->'context'->r.tier, '{}') || pg_catalog.jsonb_build_object($5, r.data)),"
			"    updated_at = pg_catalog.clock_timestamp()"
			"  FROM r WHERE " WORKER_OWNS
			"  RETURNING j.id, j.org_id, j.context),"
			" h AS (" HISTORY
			"  SELECT u.id, u.org_id, $3, 'context:' || $5, 'context', 1,"
			"         CASE WHEN r.error IS NULL THEN 'succeeded' ELSE 'failed' END,"
			"         pg_catalog.jsonb_build_object('tier', $4, 'source', $5,"
			"           'bytes', pg_catalog.octet_length(COALESCE(r.data, 'null'::jsonb)::text)),"
			"         r.error, $8, pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(), $2, $9, NULL"
			"  FROM u, r)"
			" SELECT u.context FROM u",
			9, types);
	}
	memset(n, ' ', sizeof(n));
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = Int64GetDatum(t->token);
	args[2] = Int32GetDatum(t->step_index);
	args[3] = Int32GetDatum(t->tier);
	args[4] = CStringGetTextDatum(t->name);
	args[5] = jsonb_or_null(t->data, &n[5]);
	args[6] = text_or_null(t->error, &n[6]);
	args[7] = TimestampTzGetDatum(t->started_at);
	args[8] = Int32GetDatum((int32) t->http_status);
	n[8] = t->http_status ? ' ' : 'n';
	ret = SPI_execute_plan(context_plan, args, n, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator context write-back failed: %s", SPI_result_code_string(ret));
	t->state = returned_state();
	t->applied = (t->state != NULL);
}

/*
 * apply_park stretches the lease over an HTTP request about to be sent
 * (its timeout plus orchestrator.lease_duration), so no other worker
 * reclaims the job meanwhile; a worker that dies mid-request leaves a
 * lease that lapses.
 */
static void
apply_park(OrchJobTransition *t)
{
	Datum		args[3];
	int			ret;

	if (park_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, FLOAT8OID};

		park_plan = orch_prepare_kept(
			"UPDATE orchestrator.sequence_jobs j"
			" SET lease_expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
			"     updated_at = pg_catalog.clock_timestamp()"
			" WHERE " WORKER_OWNS,
			3, types);
	}
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = Int64GetDatum(t->token);
	args[2] = Float8GetDatum((double) t->lease_ms);
	ret = SPI_execute_plan(park_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator park write-back failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
}

/*
 * apply_continue checkpoints a job that used its time slice: back to
 * pending at the step it reached, runnable now but behind the jobs already
 * due, and the history says so (orchestrator:continuation).
 */
static void
apply_continue(OrchJobTransition *t)
{
	Datum		args[4];
	int			ret;

	if (continue_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT8OID, INT4OID, TEXTOID};

		continue_plan = orch_prepare_kept(
			"WITH u AS ("
			"  UPDATE orchestrator.sequence_jobs j"
			"  SET status = 'pending', run_at = pg_catalog.clock_timestamp(), lease_owner = NULL,"
			"      lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()"
			"  WHERE " WORKER_OWNS
			"  RETURNING j.id, j.org_id)"
			" " HISTORY
			" SELECT u.id, u.org_id, $3, NULL, 'engine', 1, 'continuation', NULL, $4,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(), $2,"
			"        NULL, NULL FROM u",
			4, types);
	}
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = Int64GetDatum(t->token);
	args[2] = Int32GetDatum(t->step_index);
	args[3] = CStringGetTextDatum(t->note);
	ret = SPI_execute_plan(continue_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator continuation write-back failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
}

/*
 * apply_fail fails a job after an error outside any step (a definition
 * the engine cannot read, say), with an engine history row.
 */
static void
apply_fail(OrchJobTransition *t)
{
	Datum		args[3];
	int			ret;

	if (fail_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, INT8OID, TEXTOID};

		fail_plan = orch_prepare_kept(
			"WITH r AS (SELECT orchestrator.redact($3) AS error),"
			" u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET status = 'failed', last_error = r.error,"
			"    lease_owner = NULL, lease_expires_at = NULL,"
			"    finished_at = pg_catalog.clock_timestamp(), updated_at = pg_catalog.clock_timestamp()"
			"  FROM r WHERE " WORKER_OWNS
			"  RETURNING j.id, j.org_id, j.current_step)"
			" " HISTORY
			" SELECT u.id, u.org_id, u.current_step, NULL, 'engine', 1, 'failed', NULL, r.error,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(), $2,"
			"        NULL, NULL FROM u, r",
			3, types);
	}
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = Int64GetDatum(t->token);
	args[2] = CStringGetTextDatum(t->error);
	ret = SPI_execute_plan(fail_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator job failure write-back failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
}

/*
 * apply_operator: cancel, retry or an approval decision, by a caller that
 * holds the job's row lock and made its new state.  No lease survives it;
 * a job put back to pending is runnable now; a job that ends gets its
 * finished_at.
 */
static void
apply_operator(OrchJobTransition *t)
{
	Datum		args[15];
	char		n[15];
	int			ret;

	if (operator_plan == NULL)
	{
		Oid			types[15] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID, INT4OID, INT4OID, INT4OID,
			BOOLOID, BOOLOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID};

		operator_plan = orch_prepare_kept(
			"WITH u AS ("
			"  UPDATE orchestrator.sequence_jobs j SET"
			"    status = $3, context = COALESCE($4, j.context),"
			"    current_step = COALESCE($5, j.current_step), attempts = COALESCE($6, j.attempts),"
			"    reclaims = COALESCE($7, j.reclaims),"
			"    run_at = CASE WHEN $3 = 'pending' THEN pg_catalog.clock_timestamp() ELSE j.run_at END,"
			"    fencing_token = j.fencing_token + CASE WHEN $8 THEN 1 ELSE 0 END,"
			"    lease_owner = NULL, lease_expires_at = NULL,"
			"    last_error = CASE WHEN $9 THEN NULL ELSE j.last_error END,"
			"    finished_at = CASE WHEN $3 IN ('completed', 'failed', 'cancelled') THEN pg_catalog.clock_timestamp() END,"
			"    updated_at = pg_catalog.clock_timestamp()"
			"  WHERE j.id = $1 AND j.status = $2"
			"  RETURNING j.id, j.org_id, j.fencing_token)"
			" " HISTORY
			" SELECT u.id, u.org_id, $10, $11, $12, 1, $13, $14, $15,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(),"
			"        u.fencing_token, NULL, NULL FROM u",
			15, types);
	}
	memset(n, ' ', sizeof(n));
	args[0] = UUIDPGetDatum(&t->job_id);
	args[1] = CStringGetTextDatum(status_names[t->from]);
	args[2] = CStringGetTextDatum(status_names[t->to]);
	args[3] = jsonb_or_null(t->context, &n[3]);
	args[4] = Int32GetDatum(t->current_step);
	n[4] = t->current_step >= 0 ? ' ' : 'n';
	args[5] = Int32GetDatum(t->attempts);
	n[5] = t->attempts >= 0 ? ' ' : 'n';
	args[6] = Int32GetDatum(t->reclaims);
	n[6] = t->reclaims >= 0 ? ' ' : 'n';
	args[7] = BoolGetDatum(t->new_token);
	args[8] = BoolGetDatum(t->clear_error);
	args[9] = Int32GetDatum(t->step_index);
	n[9] = t->step_index >= 0 ? ' ' : 'n';
	args[10] = text_or_null(t->step_name, &n[10]);
	args[11] = CStringGetTextDatum(t->history_kind);
	args[12] = CStringGetTextDatum(t->outcome);
	args[13] = jsonb_or_null(t->output, &n[13]);
	args[14] = text_or_null(t->note, &n[14]);
	ret = SPI_execute_plan(operator_plan, args, n, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator job transition failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
}

/*
 * orch_job_create inserts a new pending job (transcripts stripped from
 * its payload, its initial state built by orchestrator.initial_state) and
 * links a follow-up into its parent's event_chain.children.
 */
pg_uuid_t
orch_job_create(Datum org_id, Datum user_id, Datum type, Datum source, int32 version,
				TimestampTz run_at, Jsonb *payload, Datum parent_job_id, bool has_parent,
				int32 chain_depth)
{
	Datum		args[9];
	char		n[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	bool		isnull;
	pg_uuid_t	id;

	if (create_plan == NULL)
	{
		Oid			types[9] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, UUIDOID, INT4OID};

		create_plan = orch_prepare_kept(
			"WITH n AS (SELECT pg_catalog.gen_random_uuid() AS id, orchestrator.without_transcripts($7) AS payload),"
			" j AS (INSERT INTO orchestrator.sequence_jobs"
			"        (id, org_id, user_id, event_type, event_source, sequence_version, run_at,"
			"         context, trigger_payload, event_chain, parent_job_id, chain_depth)"
			"       SELECT n.id, $1, $2, $3, $4, $5, $6,"
			"              orchestrator.initial_state(n.id, $3, $4, $1, $2, n.payload, $8, $9),"
			"              n.payload,"
			"              pg_catalog.jsonb_build_object('parent', $8, 'children', '[]'::jsonb), $8, $9"
			"       FROM n RETURNING id),"
			" p AS (UPDATE orchestrator.sequence_jobs pj"
			"       SET event_chain = pg_catalog.jsonb_set(pj.event_chain, '{children}',"
			"                         COALESCE(pj.event_chain->'children', '[]') || pg_catalog.to_jsonb(j.id))"
			"       FROM j WHERE pj.id = $8)"
			" SELECT id FROM j",
			9, types);
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

PG_FUNCTION_INFO_V1(orch_transition_job_sql);

/*
 * orchestrator.transition_job(job_id, from, to, kind, outcome, step_index,
 * step_name, context, current_step, attempts, reclaims, new_token,
 * clear_error, output, note): the operator transition for SQL callers
 * (orch_cancel_job, orch_retry_job, resolve_approval), which hold the
 * job's row lock and made its new state.  Returns whether it applied.
 */
Datum
orch_transition_job_sql(PG_FUNCTION_ARGS)
{
	OrchJobTransition t;

#define ARG_TEXT(i) (PG_ARGISNULL(i) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(i)))
#define ARG_INT(i) (PG_ARGISNULL(i) ? -1 : PG_GETARG_INT32(i))
	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("job, from, to, kind and outcome of a transition must not be NULL")));
	memset(&t, 0, sizeof(t));
	t.kind = ORCH_TRANSITION_OPERATOR;
	memcpy(&t.job_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	t.from = status_from_name(ARG_TEXT(1));
	t.to = status_from_name(ARG_TEXT(2));
	t.history_kind = ARG_TEXT(3);
	t.outcome = ARG_TEXT(4);
	t.step_index = ARG_INT(5);
	t.step_name = ARG_TEXT(6);
	t.context = PG_ARGISNULL(7) ? NULL : PG_GETARG_JSONB_P(7);
	t.current_step = ARG_INT(8);
	t.attempts = ARG_INT(9);
	t.reclaims = ARG_INT(10);
	t.new_token = !PG_ARGISNULL(11) && PG_GETARG_BOOL(11);
	t.clear_error = !PG_ARGISNULL(12) && PG_GETARG_BOOL(12);
	t.output = PG_ARGISNULL(13) ? NULL : PG_GETARG_JSONB_P(13);
	t.note = ARG_TEXT(14);

	SPI_connect();
	orch_job_transition(&t);
	SPI_finish();
	PG_RETURN_BOOL(t.applied);
}
