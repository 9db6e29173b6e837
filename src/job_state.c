/*-------------------------------------------------------------------------
 *
 * job_state.c
 *	  The one owner of job state: every write of a job's status, lease and
 *	  fencing token, and every step_history row.
 *
 * A job's status moves only along the edges of the legality table below
 * (drawn in src/README.md).  Single-job changes are OrchJobTransitions,
 * values that name the job and everything they change, applied by
 * orch_job_transition: a worker's own ones are held and written for its
 * whole batch at once ("Held writes" below), an operator's and a context
 * source's are written at once, row and history row in one statement.
 * Set-based ones are the claim (pending -> in_progress), the reclaim of
 * lapsed leases and of leases held by processes that no longer exist
 * (in_progress -> pending, or failed past orchestrator.max_reclaims) and
 * the release on SIGTERM (in_progress -> pending).
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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "job_state.h"
#include "redact.h"
#include "state.h"
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

/*
 * A new job's priority: the event's, else its type's (orch_set_priority),
 * else 0.
 */
#define PRIORITY_SQL(given, type) \
	"COALESCE(" given "::smallint, (SELECT p.priority FROM orchestrator.priorities p" \
	" WHERE p.event_type = " type "), 0::smallint)"

static SPIPlanPtr transition_plan = NULL;
static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr reclaim_plan = NULL;
static SPIPlanPtr orphan_plan = NULL;
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
 * The statement an immediate transition runs: an operator's, or a context
 * source stored.  The job's row changes only while it is in the expected
 * status (and, for a context source, under the lease's fencing token); its
 * state is the operator's ("given"), or the source folded in by
 * orchestrator.with_context_source ("source"); the lease survives only
 * while the job stays in_progress; and its history row is written in the
 * same statement.  Output is stripped of transcripts and the error
 * redacted once for both row and history.
 */
static const char *const transition_sql =
"WITH r AS (SELECT orchestrator.without_transcripts($9) AS output, orchestrator.redact($14) AS error),"
" u AS ("
"  UPDATE orchestrator.sequence_jobs j SET"
"    status = $4,"
"    context = CASE WHEN $5 = 'source' THEN orchestrator.with_context_source(j.context, $20, $7, r.output, r.error)"
"      ELSE COALESCE($6, j.context) END,"
"    current_step = COALESCE($10, j.current_step), attempts = COALESCE($11, j.attempts),"
"    reclaims = COALESCE($12, j.reclaims), run_at = COALESCE($13, j.run_at),"
"    fencing_token = j.fencing_token + CASE WHEN $15 THEN 1 ELSE 0 END,"
"    lease_owner = CASE WHEN $4 = 'in_progress' THEN j.lease_owner END,"
"    lease_expires_at = CASE WHEN $4 = 'in_progress' THEN j.lease_expires_at END,"
"    last_error = CASE WHEN $16 THEN NULL WHEN $5 = 'source' THEN j.last_error"
"                      ELSE COALESCE(r.error, j.last_error) END,"
"    finished_at = CASE WHEN $4 IN ('completed', 'failed', 'cancelled') THEN pg_catalog.clock_timestamp() END,"
"    updated_at = pg_catalog.clock_timestamp()"
"  FROM r WHERE j.id = $1 AND j.status = $3 AND ($2 IS NULL OR j.fencing_token = $2)"
"  RETURNING j.id, j.org_id, j.context, j.current_step, j.fencing_token),"
" h AS (" HISTORY
"  SELECT u.id, u.org_id, COALESCE($18, u.current_step),"
"         CASE WHEN $5 = 'source' THEN 'context:' || $7 ELSE $7 END, $17, 1, $8,"
"         CASE WHEN $5 = 'source' THEN pg_catalog.jsonb_build_object('tier', $20, 'source', $7,"
"                'bytes', pg_catalog.octet_length(COALESCE(r.output, 'null'::jsonb)::text))"
"              ELSE r.output END,"
"         COALESCE(r.error, $21), COALESCE($22, pg_catalog.clock_timestamp()), pg_catalog.clock_timestamp(),"
"         pg_catalog.pg_backend_pid(), u.fencing_token, $19, NULL"
"  FROM u, r)"
" SELECT u.context FROM u";

#define NARGS 22

/*
 * fill_args turns an immediate transition into the statement's arguments:
 * the job and where it must be, then what it changes and records.
 */
static void
fill_args(const OrchJobTransition *t, OrchArgs *a)
{
	orch_args_init(a, NARGS);
	orch_arg(a, 1, UUIDPGetDatum(&t->job_id));
	orch_arg_text(a, 3, status_names[t->from]);
	orch_arg_text(a, 4, status_names[t->to]);
	orch_arg(a, 15, BoolGetDatum(t->new_token));
	orch_arg(a, 16, BoolGetDatum(t->clear_error));
	orch_arg_int(a, 18, t->step_index);

	if (t->kind == ORCH_TRANSITION_CONTEXT)
	{
		orch_arg(a, 2, Int64GetDatum(t->token));
		orch_arg_text(a, 5, "source");
		orch_arg_text(a, 7, t->name);
		orch_arg_text(a, 8, t->error ? "failed" : "succeeded");
		orch_arg_jsonb(a, 9, t->data);
		orch_arg_text(a, 14, t->error);
		orch_arg_text(a, 17, "context");
		if (t->http_status)
			orch_arg(a, 19, Int32GetDatum((int32) t->http_status));
		orch_arg(a, 20, Int32GetDatum(t->tier));
		orch_arg_time(a, 22, t->started_at);
	}
	else
	{
		orch_arg_text(a, 5, "given");
		orch_arg_jsonb(a, 6, t->context);
		orch_arg_text(a, 7, t->step_name);
		orch_arg_text(a, 8, t->outcome);
		orch_arg_jsonb(a, 9, t->output);
		orch_arg_int(a, 10, t->current_step);
		orch_arg_int(a, 11, t->attempts);
		orch_arg_int(a, 12, t->reclaims);
		if (t->to == ORCH_JOB_PENDING)
			orch_arg_time(a, 13, GetCurrentTimestamp());
		orch_arg_text(a, 17, t->history_kind);
		orch_arg_text(a, 21, t->note);
	}
}

/*
 * apply runs an immediate transition's statement and reads what it did.
 */
static void
apply(OrchJobTransition *t)
{
	OrchArgs	a;
	int			ret;

	if (transition_plan == NULL)
	{
		Oid			types[NARGS] = {UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID,
			TEXTOID, JSONBOID, INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID, TEXTOID, BOOLOID, BOOLOID,
		TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID};

		transition_plan = orch_prepare_kept(transition_sql, NARGS, types);
	}
	fill_args(t, &a);
	ret = orch_execute_keyed(transition_plan, a.values, a.nulls, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator job transition failed: %s", SPI_result_code_string(ret));
	t->applied = (SPI_processed == 1);
	t->state = NULL;
	if (t->applied && t->kind == ORCH_TRANSITION_CONTEXT)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		t->state = isnull ? NULL : DatumGetJsonbP(d);
	}

	/* a job put back to pending wakes the workers once this commits */
	if (t->applied && t->to == ORCH_JOB_PENDING)
		orch_wake_at_commit();
}

/*
 * Held writes.  A worker's own transitions of the jobs it runs (a step
 * result, a park, a continuation, a failure outside a step) are not
 * written one statement each: they are held here, per job, and written
 * for the whole batch by one UPDATE of the jobs and one INSERT of their
 * history rows (write_held) before the batch's transaction commits, so
 * they still commit with the steps' own writes or not at all.  A step's
 * result is folded into the job's state at once (state.c), so the next
 * step sees it.
 *
 * Holding is safe because a job being run is locked by its worker's
 * transaction (step.c's load_job): nobody else can change it before the
 * batch commits.  Only that transaction itself can, when a step calls an
 * operator function on a job of the batch (orch_cancel_job,
 * orch_retry_job): those first ask for the job's held writes to be written
 * (orch_job_write_held, through orchestrator.write_held_job), and an
 * operator transition that applies marks the job moved, so the worker's
 * later transitions of it no longer apply, as they would not have under
 * the new fencing token.  Writes made early this way are undone with the
 * subtransaction that made them (held_subxact_callback): the job's held
 * writes are then pending again.
 */
typedef struct HeldRow
{
	int			step_index;		/* -1: the job's current step */
	char	   *step_name;
	char	   *kind;
	int			attempt;
	const char *outcome;
	Jsonb	   *output;
	char	   *error;
	TimestampTz started_at;
	TimestampTz finished_at;
	int			http_status;	/* 0: none */
	char	   *scope;
} HeldRow;

typedef struct HeldJob
{
	pg_uuid_t	id;				/* hash key */
	int64		token;
	int			order;			/* when first held: the order of the write */
	bool		dirty;			/* row changes not written yet */
	bool		moved;			/* an operator moved it in this transaction */
	OrchJobStatus status;
	Jsonb	   *state;			/* NULL: unchanged */
	int			current_step;	/* -1: unchanged */
	int			attempts;		/* -1: unchanged */
	TimestampTz run_at;			/* 0: unchanged */
	TimestampTz finished_at;	/* 0: not final */
	char	   *error;			/* the last error recorded, or NULL */
	long		lease_ms;		/* 0: the lease as it is */
	List	   *rows;			/* HeldRow *, in order */
	int			nwritten;		/* rows already written early */
} HeldJob;

/* An early write (or a move), to undo if its subtransaction rolls back. */
typedef struct HeldUndo
{
	SubTransactionId subid;
	HeldJob    *job;
	bool		was_dirty;
	int			nwritten;
	bool		was_moved;
} HeldUndo;

static MemoryContext held_cxt = NULL;	/* NULL: nothing is held */
static HTAB *held_jobs = NULL;
static List *held_undo = NIL;
static int	held_count = 0;
static SPIPlanPtr write_plan = NULL;

static void write_held(HeldJob *only);

static int
held_order(const void *a, const void *b)
{
	int			x = (*(HeldJob *const *) a)->order;
	int			y = (*(HeldJob *const *) b)->order;

	return (x > y) - (x < y);
}

/* held_entry: the job's held writes, made on first use when create */
static HeldJob *
held_entry(const pg_uuid_t *id, int64 token, bool create)
{
	bool		found;
	HeldJob    *h;

	if (held_jobs == NULL)
		return NULL;
	h = hash_search(held_jobs, id, create ? HASH_ENTER : HASH_FIND, &found);
	if (h != NULL && !found)
	{
		h->token = token;
		h->order = held_count++;
		h->dirty = false;
		h->moved = false;
		h->state = NULL;
		h->current_step = -1;
		h->attempts = -1;
		h->run_at = 0;
		h->finished_at = 0;
		h->error = NULL;
		h->lease_ms = 0;
		h->rows = NIL;
		h->nwritten = 0;
	}
	return h;
}

/*
 * remember_undo records h as it is, to be put back if the current
 * subtransaction rolls back what is about to change it (an early write,
 * an operator's move).
 */
static void
remember_undo(HeldJob *h)
{
	MemoryContext old = MemoryContextSwitchTo(held_cxt);
	HeldUndo   *u = palloc(sizeof(HeldUndo));

	u->subid = GetCurrentSubTransactionId();
	u->job = h;
	u->was_dirty = h->dirty;
	u->nwritten = h->nwritten;
	u->was_moved = h->moved;
	held_undo = lappend(held_undo, u);
	MemoryContextSwitchTo(old);
}

/* held_row: a history row of h, copied into the held context */
static HeldRow *
held_row(HeldJob *h, int step_index, const char *step_name, const char *kind, const char *outcome,
		 Jsonb *output, const char *error, TimestampTz started_at, TimestampTz finished_at)
{
	MemoryContext old = MemoryContextSwitchTo(held_cxt);
	HeldRow    *r = palloc0(sizeof(HeldRow));

	r->step_index = step_index;
	r->step_name = step_name ? pstrdup(step_name) : NULL;
	r->kind = pstrdup(kind);
	r->attempt = 1;
	r->outcome = outcome;
	r->output = output ? (Jsonb *) DatumGetPointer(datumCopy(JsonbPGetDatum(output), false, -1)) : NULL;
	r->error = error ? orch_redact(error) : NULL;
	r->started_at = started_at;
	r->finished_at = finished_at;
	h->rows = lappend(h->rows, r);
	if (r->error)
		h->error = r->error;
	MemoryContextSwitchTo(old);
	return r;
}

/* held_status: h's row goes to status, as of now */
static void
held_status(HeldJob *h, OrchJobStatus status)
{
	h->dirty = true;
	h->status = status;
	h->finished_at = (status == ORCH_JOB_COMPLETED || status == ORCH_JOB_FAILED ||
					  status == ORCH_JOB_CANCELLED) ? GetCurrentTimestamp() : 0;
	if (status != ORCH_JOB_IN_PROGRESS)
		h->lease_ms = 0;
}

/*
 * fold folds a step's result into the state it ran on (state.c): the
 * stored output (transcripts stripped) and the new state.
 */
static void
fold(const OrchJobTransition *t, Jsonb **output, Jsonb **state)
{
	const OrchStepRecord *r = t->step;

	*output = orch_without_transcripts(r->output);
	*state = orch_state_advance(t->context, r->step_name, outcome_name(r->outcome), *output,
								(double) (r->finished_at - r->started_at) / 1000.0, r->next_step,
								r->followups,
								DatumGetNumeric(DirectFunctionCall1(float8_numeric,
																	Float8GetDatum(r->cost_usd))));
}

/*
 * hold records a worker transition in the job's held writes.
 */
static void
hold(OrchJobTransition *t)
{
	HeldJob    *h = held_entry(&t->job_id, t->token, true);
	MemoryContext old;

	t->state = NULL;
	t->applied = !h->moved && h->token == t->token;
	if (!t->applied)
		return;

	switch (t->kind)
	{
		case ORCH_TRANSITION_STEP:
			{
				const OrchStepRecord *rec = t->step;
				Jsonb	   *output;
				Jsonb	   *state;
				HeldRow    *row;

				/*
				 * The fold runs in the caller's short-lived context and only
				 * its result is copied to the held context: folding there
				 * kept every step's scratch memory until the batch ended,
				 * and the worker's CPU per job doubled (page faults).
				 */
				fold(t, &output, &state);
				old = MemoryContextSwitchTo(held_cxt);
				state = (Jsonb *) DatumGetPointer(datumCopy(JsonbPGetDatum(state), false, -1));
				MemoryContextSwitchTo(old);
				row = held_row(h, rec->step_index, rec->step_name, rec->kind, outcome_name(rec->outcome),
							   output, rec->error, rec->started_at, rec->finished_at);
				row->attempt = rec->attempt;
				row->http_status = (int) rec->http_status;
				row->scope = rec->scope ? MemoryContextStrdup(held_cxt, rec->scope) : NULL;
				h->state = state;
				held_status(h, t->to);
				h->current_step = rec->next_step;
				h->attempts = rec->job_attempts;
				if (rec->run_at)
					h->run_at = rec->run_at;
				t->state = h->state;
				break;
			}
		case ORCH_TRANSITION_PARK:
			held_status(h, t->to);
			h->lease_ms = t->lease_ms;
			break;
		case ORCH_TRANSITION_CONTINUE:
			{
				HeldRow    *row = held_row(h, t->step_index, NULL, "engine", "continuation", NULL, NULL,
											GetCurrentTimestamp(), GetCurrentTimestamp());

				/* the history row says why; the job's last_error stays */
				row->error = t->note ? MemoryContextStrdup(held_cxt, t->note) : NULL;
			}
			held_status(h, t->to);
			h->run_at = GetCurrentTimestamp();
			orch_wake_at_commit();
			break;
		case ORCH_TRANSITION_FAIL:
			held_row(h, -1, NULL, "engine", "failed", NULL, t->error,
					 GetCurrentTimestamp(), GetCurrentTimestamp());
			held_status(h, t->to);
			break;
		default:
			elog(ERROR, "transition kind %d is not held", (int) t->kind);
	}
}

/*
 * held_subxact_callback undoes early writes with the subtransaction that
 * made them, and hands the others on to its parent when it commits.
 */
static void
held_subxact_callback(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (held_cxt == NULL || held_undo == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* newest first: an older undo of the same job wins */
		for (int i = list_length(held_undo) - 1; i >= 0; i--)
		{
			HeldUndo   *u = list_nth(held_undo, i);

			if (u->subid != mySubid)
				continue;
			u->job->dirty = u->was_dirty;
			u->job->nwritten = u->nwritten;
			u->job->moved = u->was_moved;
			held_undo = list_delete_nth_cell(held_undo, i);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		foreach(lc, held_undo)
		{
			HeldUndo   *u = lfirst(lc);

			if (u->subid == mySubid)
				u->subid = parentSubid;
		}
}

/* held_xact_callback: what is held dies with its transaction */
static void
held_xact_callback(XactEvent event, void *arg)
{
	if (held_cxt == NULL)
		return;
	if (event == XACT_EVENT_PRE_COMMIT)
	{
		HASH_SEQ_STATUS seq;
		HeldJob    *h;

		hash_seq_init(&seq, held_jobs);
		while ((h = hash_seq_search(&seq)) != NULL)
			if (h->dirty && !h->moved)
			{
				hash_seq_term(&seq);
				elog(ERROR, "orchestrator job %s has writes held past its batch", orch_uuid_str(&h->id));
			}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		/* held_cxt is a child of TopTransactionContext: it is gone */
		held_cxt = NULL;
		held_jobs = NULL;
		held_undo = NIL;
	}
}

/*
 * orch_job_hold_begin starts holding the worker transitions of this
 * transaction until orch_job_hold_end; false if they are held already
 * (the caller then leaves the writing to whoever began).
 */
bool
orch_job_hold_begin(void)
{
	static bool registered = false;
	HASHCTL		ctl;

	if (held_cxt != NULL)
		return false;
	if (!registered)
	{
		RegisterXactCallback(held_xact_callback, NULL);
		RegisterSubXactCallback(held_subxact_callback, NULL);
		registered = true;
	}
	held_cxt = AllocSetContextCreate(TopTransactionContext, "orchestrator held job writes",
									 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(HeldJob);
	ctl.hcxt = held_cxt;
	held_jobs = hash_create("orchestrator held jobs", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	held_undo = NIL;
	held_count = 0;
	return true;
}

/*
 * orch_job_hold_end writes everything held (one UPDATE, one INSERT) and
 * stops holding.  Connects SPI itself.
 */
void
orch_job_hold_end(void)
{
	if (held_cxt == NULL)
		return;
	SPI_connect();
	write_held(NULL);
	SPI_finish();
	MemoryContextDelete(held_cxt);
	held_cxt = NULL;
	held_jobs = NULL;
	held_undo = NIL;
}

/*
 * orch_job_hold_forget drops what is held for a job whose run rolled back
 * (its step results went with it).
 */
void
orch_job_hold_forget(const pg_uuid_t *job_id)
{
	HeldJob    *h = held_entry(job_id, 0, false);
	ListCell   *lc;

	if (h == NULL)
		return;
	foreach(lc, held_undo)
		if (((HeldUndo *) lfirst(lc))->job == h)
			held_undo = foreach_delete_current(held_undo, lc);
	hash_search(held_jobs, job_id, HASH_REMOVE, NULL);
}

/*
 * orch_job_write_held writes the held writes of one job now, in the
 * current subtransaction, so that SQL about to read or move the job sees
 * it as it is (operator functions call it through
 * orchestrator.write_held_job).  SPI connected.
 */
void
orch_job_write_held(const pg_uuid_t *job_id)
{
	HeldJob    *h = held_entry(job_id, 0, false);

	if (h == NULL || h->moved || !h->dirty)
		return;
	write_held(h);
}

/*
 * wake_fan_in wakes the parents, in column 2 of the written jobs' rows, of
 * the jobs that ended, when they wait at a fan_out step for their children
 * (wait.sql): they look at them now instead of at their next check.  A
 * parent whose row another transaction holds is being run, and looks
 * anyway.  SPI_tuptable is left as it was.
 */
static void
wake_fan_in(SPITupleTable *tt, uint64 n)
{
	Datum	   *parents = NULL;
	int			nparents = 0;

	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull);

		if (isnull)
			continue;
		if (parents == NULL)
			parents = palloc(sizeof(Datum) * n);
		parents[nparents++] = d;
	}
	if (nparents > 0)
	{
		SPITupleTable *keep = SPI_tuptable;
		uint64		keep_n = SPI_processed;

		orch_job_wake(orch_array_of(parents, NULL, nparents, UUIDOID), "fan_out");
		SPI_tuptable = keep;
		SPI_processed = keep_n;
	}
}

/*
 * write_held writes the held jobs (only one, or all of them that have
 * changes) with their new history rows, in one statement: an UPDATE of
 * the jobs from arrays, under their fencing tokens, and one INSERT of the
 * history rows of those it updated, in the order they were held.  A job
 * its own step changed behind the engine's back (an UPDATE of the table)
 * is left as it is, and said so.
 */
static void
write_held(HeldJob *only)
{
#define NCOLS 22
	static const Oid types[NCOLS] = {
		/* jobs */
		UUIDOID, INT8OID, TEXTOID, JSONBOID, INT4OID, INT4OID, TIMESTAMPTZOID, TEXTOID, FLOAT8OID,
		TIMESTAMPTZOID,
		/* history rows */
		UUIDOID, INT4OID, TEXTOID, TEXTOID, INT4OID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, INT4OID, TEXTOID
	};
	HeldJob   **jobs;
	int			njobs = 0;
	int			nrows = 0;
	int			k;
	Datum	   *vals[NCOLS];
	bool	   *nulls[NCOLS];
	Datum		args[NCOLS];
	HASH_SEQ_STATUS seq;
	HeldJob    *h;
	int			ret;

	jobs = palloc(sizeof(HeldJob *) * (only ? 1 : hash_get_num_entries(held_jobs)));
	if (only)
		jobs[njobs++] = only;
	else
	{
		hash_seq_init(&seq, held_jobs);
		while ((h = hash_seq_search(&seq)) != NULL)
			if (h->dirty && !h->moved)
				jobs[njobs++] = h;
	}
	if (njobs == 0)
		return;
	for (int i = 0; i < njobs; i++)
		nrows += list_length(jobs[i]->rows) - jobs[i]->nwritten;
	for (int c = 0; c < NCOLS; c++)
	{
		int			len = (c < 10) ? njobs : nrows;

		vals[c] = palloc0(sizeof(Datum) * Max(len, 1));
		nulls[c] = palloc0(sizeof(bool) * Max(len, 1));
	}

	/* in the order first held: jobs, then their rows */
	qsort(jobs, njobs, sizeof(HeldJob *), held_order);

#define SET(c, i, d) (vals[c][i] = (d))
/* column c of row i: d, or NULL unless cond */
#define SET_IF(c, i, cond, d) \
	do { if (cond) vals[c][i] = (d); else nulls[c][i] = true; } while (0)
	k = 0;
	for (int i = 0; i < njobs; i++)
	{
		h = jobs[i];
		SET(0, i, UUIDPGetDatum(&h->id));
		SET(1, i, Int64GetDatum(h->token));
		SET(2, i, CStringGetTextDatum(status_names[h->status]));
		SET_IF(3, i, h->state, JsonbPGetDatum(h->state));
		SET_IF(4, i, h->current_step >= 0, Int32GetDatum(h->current_step));
		SET_IF(5, i, h->attempts >= 0, Int32GetDatum(h->attempts));
		SET_IF(6, i, h->run_at, TimestampTzGetDatum(h->run_at));
		SET_IF(7, i, h->error, CStringGetTextDatum(h->error));
		SET_IF(8, i, h->lease_ms > 0, Float8GetDatum((double) h->lease_ms));
		SET_IF(9, i, h->finished_at, TimestampTzGetDatum(h->finished_at));

		for (int n = h->nwritten; n < list_length(h->rows); n++, k++)
		{
			HeldRow    *r = list_nth(h->rows, n);

			SET(10, k, UUIDPGetDatum(&h->id));
			SET_IF(11, k, r->step_index >= 0, Int32GetDatum(r->step_index));
			SET_IF(12, k, r->step_name, CStringGetTextDatum(r->step_name));
			SET(13, k, CStringGetTextDatum(r->kind));
			SET(14, k, Int32GetDatum(r->attempt));
			SET(15, k, CStringGetTextDatum(r->outcome));
			SET_IF(16, k, r->output, JsonbPGetDatum(r->output));
			SET_IF(17, k, r->error, CStringGetTextDatum(r->error));
			SET(18, k, TimestampTzGetDatum(r->started_at));
			SET(19, k, TimestampTzGetDatum(r->finished_at));
			SET_IF(20, k, r->http_status, Int32GetDatum(r->http_status));
			SET_IF(21, k, r->scope, CStringGetTextDatum(r->scope));
		}
	}
#undef SET
#undef SET_IF

	for (int c = 0; c < NCOLS; c++)
		args[c] = orch_array_of(vals[c], nulls[c], (c < 10) ? njobs : nrows, types[c]);

	if (write_plan == NULL)
	{
		Oid			argtypes[NCOLS];

		for (int c = 0; c < NCOLS; c++)
			argtypes[c] = get_array_type(types[c]);
		write_plan = orch_prepare_kept(
			"WITH v AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
			"             pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
			"             pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10))"
			"           AS v(id, token, status, context, current_step, attempts, run_at, error, lease_ms, finished_at)),"
			" u AS (UPDATE orchestrator.sequence_jobs j SET"
			"    status = v.status, context = COALESCE(v.context, j.context),"
			"    current_step = COALESCE(v.current_step, j.current_step),"
			"    attempts = COALESCE(v.attempts, j.attempts), run_at = COALESCE(v.run_at, j.run_at),"
			"    lease_owner = CASE WHEN v.status = 'in_progress' THEN j.lease_owner END,"
			"    lease_expires_at = CASE WHEN v.status = 'in_progress' THEN COALESCE(pg_catalog.clock_timestamp()"
			"                       + pg_catalog.make_interval(secs => v.lease_ms / 1000.0), j.lease_expires_at) END,"
			"    last_error = COALESCE(v.error, j.last_error), finished_at = v.finished_at,"
			"    updated_at = pg_catalog.clock_timestamp()"
			"  FROM v WHERE j.id = v.id AND j.id = ANY ($1) AND j.status = 'in_progress' AND j.fencing_token = v.token"
			"  RETURNING j.id, j.org_id, j.current_step, j.fencing_token, j.status, j.parent_job_id),"
			" h AS (" HISTORY
			"  SELECT x.job_id, u.org_id, COALESCE(x.step_index, u.current_step), x.step_name, x.kind, x.attempt,"
			"         x.outcome, x.output, x.error, x.started_at, x.finished_at, pg_catalog.pg_backend_pid(),"
			"         u.fencing_token, x.http_status, x.scope"
			"  FROM ROWS FROM (pg_catalog.unnest($11), pg_catalog.unnest($12), pg_catalog.unnest($13),"
			"       pg_catalog.unnest($14), pg_catalog.unnest($15), pg_catalog.unnest($16), pg_catalog.unnest($17),"
			"       pg_catalog.unnest($18), pg_catalog.unnest($19), pg_catalog.unnest($20), pg_catalog.unnest($21),"
			"       pg_catalog.unnest($22)) WITH ORDINALITY"
			"       AS x(job_id, step_index, step_name, kind, attempt, outcome, output, error, started_at,"
			"            finished_at, http_status, scope, n)"
			"  JOIN u ON u.id = x.job_id ORDER BY x.n)"
			/* the parent of a job that ended, which may wait for it (a fan_out) */
			" SELECT u.id, CASE WHEN u.status IN ('completed', 'failed', 'cancelled') THEN u.parent_job_id END FROM u",
			NCOLS, argtypes);
	}
	ret = orch_execute_keyed(write_plan, args, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator could not write the batch's job transitions: %s", SPI_result_code_string(ret));
	wake_fan_in(SPI_tuptable, SPI_processed);

	if (SPI_processed < (uint64) njobs)
	{
		/* said of each job that was not where its worker left it */
		for (int i = 0; i < njobs; i++)
		{
			bool		written = false;

			for (uint64 p = 0; p < SPI_processed && !written; p++)
			{
				bool		isnull;

				written = memcmp(DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[p], SPI_tuptable->tupdesc, 1,
															 &isnull)),
								 &jobs[i]->id, sizeof(pg_uuid_t)) == 0;
			}
			if (!written)
			{
				ereport(LOG,
						(errmsg("orchestrator job %s was changed by its own step outside the engine's functions; its results in this batch are not recorded",
								orch_uuid_str(&jobs[i]->id))));
				jobs[i]->moved = true;
			}
		}
	}

	for (int i = 0; i < njobs; i++)
	{
		h = jobs[i];
		if (only)
			remember_undo(h);
		h->dirty = false;
		h->nwritten = list_length(h->rows);
	}
#undef NCOLS
}

/*
 * orch_job_lock locks the rows of the jobs a batch is about to run, in the
 * batch's own (top-level) transaction, before each job runs in its
 * subtransaction.  The job's load then finds the row locked already, and
 * the held writes update it in the transaction that locked it: a row
 * locked in a subtransaction and updated by its parent would carry a
 * MultiXact, and every later visibility check of it would read the
 * multixact SLRU (measured: the worker's CPU per step grew tenfold over a
 * few hundred thousand jobs).  Rows are locked in id order.
 */
void
orch_job_lock(const OrchClaimedJob *jobs, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *ids;
	Datum		arg;
	int			ret;

	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		ids[i] = UUIDPGetDatum(&jobs[i].id);
	arg = orch_array_of(ids, NULL, n, UUIDOID);
	if (plan == NULL)
	{
		Oid			types[1] = {UUIDARRAYOID};

		plan = orch_prepare_kept(
			"SELECT 1 FROM orchestrator.sequence_jobs j"
			" WHERE j.id = ANY ($1) AND j.status = 'in_progress'"
			" ORDER BY j.id FOR UPDATE",
			1, types);
	}
	ret = orch_execute_keyed(plan, &arg, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator could not lock the batch's jobs: %s", SPI_result_code_string(ret));
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
	t->step_index = -1;
}

/*
 * orch_job_transition applies n transitions (of different jobs), in order,
 * after checking that each edge exists and that its kind may take it; an
 * illegal one raises an ERROR before anything is written.  Each
 * transition's applied says whether its job was where it expected it;
 * nothing is written for it otherwise.  For a step result or a context
 * source, state is the job's new state (other kinds leave it NULL rather
 * than fetch a state nobody reads).
 *
 * A worker's step result, park, continuation and failure are held (see
 * "Held writes" above, orch_job_hold_begin) and written before the
 * transaction commits.  An operator
 * transition and a context source are written at once, after the job's
 * held writes.
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

	for (int i = 0; i < n; i++)
	{
		if (t[i].kind == ORCH_TRANSITION_OPERATOR || t[i].kind == ORCH_TRANSITION_CONTEXT)
		{
			HeldJob    *h = held_entry(&t[i].job_id, 0, false);

			if (h != NULL && t[i].kind == ORCH_TRANSITION_CONTEXT && h->moved)
			{
				t[i].applied = false;
				t[i].state = NULL;
				continue;
			}
			if (h != NULL)
				orch_job_write_held(&t[i].job_id);
			apply(&t[i]);
			if (h != NULL && t[i].applied && t[i].kind == ORCH_TRANSITION_OPERATOR)
			{
				remember_undo(h);
				h->moved = true;
			}
		}
		else if (held_cxt != NULL)
			hold(&t[i]);
		else
			elog(ERROR, "a worker's transition of job %s outside a run", orch_uuid_str(&t[i].job_id));
	}
}

/*
 * orch_job_create inserts a new pending job (transcripts stripped from
 * its payload, its initial state built by state.c), its event_log row
 * (accepted, or deferred to run_at for quiet hours) and, for a follow-up,
 * its link in the parent's event_chain.children: one statement, on the
 * submit path.
 */
pg_uuid_t
orch_job_create(Datum org_id, Datum user_id, Datum type, Datum source, int32 version,
				TimestampTz run_at, Jsonb *payload, Datum parent_job_id, bool has_parent,
				int32 chain_depth, Datum dedupe_hash, int32 priority)
{
	static SPIPlanPtr child_plan = NULL;
	SPIPlanPtr	plan;
	Datum		a[13];
	char		an[13];
	int			ret;
	pg_uuid_t	id;
	Jsonb	   *stripped = orch_without_transcripts(payload);

	orch_new_uuid(&id);

	if (create_plan == NULL)
	{
		/* $9 (the parent) is NULL for this one; child_plan links the child */
		const char *insert_sql =
			"WITH j AS (INSERT INTO orchestrator.sequence_jobs"
			"        (id, org_id, user_id, event_type, event_source, sequence_version, run_at,"
			"         context, trigger_payload, event_chain, parent_job_id, chain_depth, priority)"
			"       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
			"               pg_catalog.jsonb_build_object('parent', $10, 'children', '[]'::jsonb), $10, $11,"
			"               " PRIORITY_SQL("$13", "$4") ")"
			"       RETURNING id, run_at),"
			" l AS (INSERT INTO orchestrator.event_log"
			"        (org_id, user_id, event_type, event_source, outcome, reason, job_id, run_at,"
			"         parent_job_id, dedupe_hash)"
			"       SELECT $2, $3, $4, $5,"
			"              CASE WHEN j.run_at > pg_catalog.now() THEN 'deferred' ELSE 'accepted' END,"
			"              CASE WHEN j.run_at > pg_catalog.now() THEN 'quiet_hours' END,"
			"              j.id, j.run_at, $10, $12 FROM j)";
		Oid			types[13] = {UUIDOID, UUIDOID, UUIDOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
		JSONBOID, JSONBOID, UUIDOID, INT4OID, UUIDOID, INT4OID};

		create_plan = orch_prepare_kept(psprintf("%s SELECT id FROM j", insert_sql), 13, types);
		child_plan = orch_prepare_kept(
			psprintf("%s, p AS (UPDATE orchestrator.sequence_jobs pj"
					 "       SET event_chain = pg_catalog.jsonb_set(pj.event_chain, '{children}',"
					 "                         COALESCE(pj.event_chain->'children', '[]') || pg_catalog.to_jsonb(j.id))"
					 "       FROM j WHERE pj.id = $10)"
					 " SELECT id FROM j", insert_sql),
			13, types);
	}
	plan = has_parent ? child_plan : create_plan;
	a[0] = UUIDPGetDatum(&id);
	a[1] = org_id;
	a[2] = user_id;
	a[3] = type;
	a[4] = source;
	a[5] = Int32GetDatum(version);
	a[6] = TimestampTzGetDatum(run_at);
	a[7] = JsonbPGetDatum(orch_state_initial(&id, TextDatumGetCString(type), TextDatumGetCString(source),
											 DatumGetUUIDP(org_id), DatumGetUUIDP(user_id), stripped,
											 has_parent ? DatumGetUUIDP(parent_job_id) : NULL,
											 chain_depth));
	a[8] = JsonbPGetDatum(stripped);
	a[9] = has_parent ? parent_job_id : (Datum) 0;
	a[10] = Int32GetDatum(chain_depth);
	a[11] = dedupe_hash;
	a[12] = Int32GetDatum(priority);
	memset(an, ' ', sizeof(an));
	an[9] = has_parent ? ' ' : 'n';
	an[12] = priority >= 0 ? ' ' : 'n';
	ret = orch_execute_keyed(plan, a, an, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator enqueue failed: %s", SPI_result_code_string(ret));
	orch_wake_at_commit();
	return id;
}

/*
 * orch_job_fork copies the job "from" into a new pending job that starts at
 * step_index with the given state (the caller, orch_fork_job, made it from
 * the old one's), and records the fork in both histories: an operator
 * "forked" row on each, whose note names the other job and ends with how
 * (at which step, by whom).  The new job keeps
 * the old one's org, user, event, sequence version and parent; its
 * execution_metadata names it and the job it was forked from.  Returns the
 * new job's id; the workers are woken at commit.
 */
pg_uuid_t
orch_job_fork(const pg_uuid_t *from, int32 step_index, const char *step_name, Jsonb *state,
			  const char *how)
{
	static SPIPlanPtr fork_plan = NULL;
	OrchArgs	a;
	pg_uuid_t	id;
	int			ret;

	orch_new_uuid(&id);
	if (fork_plan == NULL)
	{
		Oid			types[6] = {UUIDOID, UUIDOID, INT4OID, TEXTOID, JSONBOID, TEXTOID};

		fork_plan = orch_prepare_kept(
			"WITH o AS (SELECT * FROM orchestrator.sequence_jobs WHERE id = $1),"
			" j AS (INSERT INTO orchestrator.sequence_jobs"
			"        (id, org_id, user_id, event_type, event_source, sequence_version, current_step,"
			"         context, trigger_payload, event_chain, parent_job_id, chain_depth, priority)"
			"       SELECT $2, o.org_id, o.user_id, o.event_type, o.event_source, o.sequence_version, $3,"
			"              pg_catalog.jsonb_set(pg_catalog.jsonb_set($5, '{execution_metadata,sequence_job_id}',"
			"                                                        pg_catalog.to_jsonb($2::text)),"
			"                                   '{execution_metadata,forked_from}', pg_catalog.to_jsonb($1::text)),"
			"              o.trigger_payload,"
			"              pg_catalog.jsonb_build_object('parent', o.parent_job_id, 'children', '[]'::jsonb),"
			"              o.parent_job_id, o.chain_depth, o.priority"
			"       FROM o RETURNING id, org_id, fencing_token)"
			" " HISTORY
			" SELECT j.id, j.org_id, $3, $4, 'operator', 1, 'forked', NULL::jsonb,"
			"        'forked from job ' || $1 || ' ' || $6,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(),"
			"        j.fencing_token, NULL::integer, NULL::orchestrator.step_scope FROM j"
			" UNION ALL"
			" SELECT o.id, o.org_id, $3, $4, 'operator', 1, 'forked', NULL,"
			"        'forked into job ' || $2 || ' ' || $6,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(),"
			"        o.fencing_token, NULL, NULL FROM o, j",
			6, types);
	}
	orch_args_init(&a, 6);
	orch_arg(&a, 1, UUIDPGetDatum(from));
	orch_arg(&a, 2, UUIDPGetDatum(&id));
	orch_arg_int(&a, 3, step_index);
	orch_arg_text(&a, 4, step_name);
	orch_arg_jsonb(&a, 5, state);
	orch_arg_text(&a, 6, how);
	ret = orch_execute_keyed(fork_plan, a.values, a.nulls, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_INSERT || SPI_processed != 2)
		elog(ERROR, "orchestrator fork of a job failed: %s", SPI_result_code_string(ret));
	orch_wake_at_commit();
	return id;
}

/*
 * orch_job_create_batch writes a batch of submitted events (submit.c,
 * orch_submit_events): the jobs of the new ones, with their initial states
 * (state.c), and one event_log row per event, in the order given: two
 * INSERTs in one statement, whatever the batch's size.
 */
void
orch_job_create_batch(OrchEventBatch *b)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[13];
	Datum	   *col[9];
	bool	   *nul[9];
	static const Oid types[9] = {UUIDOID, TEXTOID, TEXTOID, UUIDOID, BOOLOID, TIMESTAMPTZOID, JSONBOID,
	JSONBOID, UUIDOID};
	int			ret;
	bool		any_new = false;
	char	   *type = TextDatumGetCString(b->type);
	char	   *source = TextDatumGetCString(b->source);

	for (int c = 0; c < 9; c++)
	{
		col[c] = palloc0(sizeof(Datum) * Max(b->n, 1));
		nul[c] = palloc0(sizeof(bool) * Max(b->n, 1));
	}
	for (int i = 0; i < b->n; i++)
	{
		col[0][i] = b->user_ids[i];
		col[1][i] = CStringGetTextDatum(b->outcomes[i]);
		if (b->reasons[i])
			col[2][i] = CStringGetTextDatum(b->reasons[i]);
		else
			nul[2][i] = true;
		any_new |= b->new[i];
		if (b->has_job[i] || b->new[i])
			col[3][i] = UUIDPGetDatum(&b->job_ids[i]);
		else
			nul[3][i] = true;
		col[4][i] = BoolGetDatum(b->new[i]);
		if (b->new[i])
		{
			col[5][i] = TimestampTzGetDatum(b->run_ats[i]);
			col[6][i] = JsonbPGetDatum(orch_state_initial(&b->job_ids[i], type, source,
														  DatumGetUUIDP(b->org_id),
														  DatumGetUUIDP(b->user_ids[i]), b->payloads[i],
														  NULL, 1));
		}
		else
		{
			nul[5][i] = true;
			nul[6][i] = true;
		}
		col[7][i] = JsonbPGetDatum(b->payloads[i]);
		col[8][i] = b->dedupe_hashes[i];
	}
	for (int c = 0; c < 9; c++)
		args[c] = orch_array_of(col[c], nul[c], b->n, types[c]);
	args[9] = b->org_id;
	args[10] = b->type;
	args[11] = b->source;
	args[12] = Int32GetDatum(b->version);

	if (plan == NULL)
	{
		Oid			argtypes[13];

		for (int c = 0; c < 9; c++)
			argtypes[c] = get_array_type(types[c]);
		argtypes[9] = UUIDOID;
		argtypes[10] = TEXTOID;
		argtypes[11] = TEXTOID;
		argtypes[12] = INT4OID;
		plan = orch_prepare_kept(
			"WITH v AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
			"             pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
			"             pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9)) WITH ORDINALITY"
			"           AS v(user_id, outcome, reason, job_id, new, run_at, context, payload, hash, n)),"
			" j AS (INSERT INTO orchestrator.sequence_jobs"
			"        (id, org_id, user_id, event_type, event_source, sequence_version, run_at,"
			"         context, trigger_payload, event_chain, parent_job_id, chain_depth, priority)"
			"       SELECT v.job_id, $10, v.user_id, $11, $12, $13, v.run_at, v.context, v.payload,"
			"              '{\"parent\": null, \"children\": []}'::jsonb, NULL, 1,"
			"              " PRIORITY_SQL("NULL::integer", "$11")
			"       FROM v WHERE v.new ORDER BY v.n)"
			" INSERT INTO orchestrator.event_log"
			"  (org_id, user_id, event_type, event_source, outcome, reason, job_id, run_at, dedupe_hash, payload)"
			" SELECT $10, v.user_id, $11, $12, v.outcome, v.reason, v.job_id, v.run_at, v.hash,"
			"        CASE WHEN v.new THEN NULL ELSE v.payload END"
			" FROM v ORDER BY v.n",
			13, argtypes);
	}
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT || SPI_processed != (uint64) b->n)
		elog(ERROR, "orchestrator batch enqueue failed: %s", SPI_result_code_string(ret));
	if (any_new)
		orch_wake_at_commit();
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
			"WITH c AS (SELECT j.id, j.org_id, j.user_id, (j.context->'context') ? 'tier1' AS loaded"
			"           FROM orchestrator.sequence_jobs j"
			"           WHERE j.status = 'pending' AND " CLAIM_ORDER " <= pg_catalog.now()"
			"             AND j.run_at <= pg_catalog.now()"
			"           ORDER BY " CLAIM_ORDER " LIMIT $1 FOR UPDATE SKIP LOCKED),"
			/* tier 1 is loaded once per user of the batch, not once per job */
			" t AS MATERIALIZED (SELECT p.org_id, p.user_id, orchestrator.load_tier1(p.org_id, p.user_id) AS tier1"
			"       FROM (SELECT DISTINCT c.org_id, c.user_id FROM c WHERE NOT c.loaded) p)"
			" UPDATE orchestrator.sequence_jobs j"
			" SET status = 'in_progress', lease_owner = $2,"
			"     lease_expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3 / 1000.0),"
			"     fencing_token = j.fencing_token + 1,"
			"     started_at = COALESCE(j.started_at, pg_catalog.clock_timestamp()),"
			"     updated_at = pg_catalog.clock_timestamp(),"
			"     context = CASE WHEN c.loaded THEN j.context"
			"               ELSE j.context || pg_catalog.jsonb_build_object("
			"                      'context', (j.context->'context') || pg_catalog.jsonb_build_object("
			"                                 'tier1', (SELECT t.tier1 FROM t WHERE t.org_id = c.org_id AND t.user_id = c.user_id)),"
			"                      'started_at', pg_catalog.clock_timestamp()) END"
			" FROM c WHERE j.id = c.id AND j.id = ANY (ARRAY(SELECT c.id FROM c))"
			" RETURNING j.id, j.fencing_token",
			3, types);
	}
	args[0] = Int32GetDatum(max);
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Float8GetDatum((double) lease_ms);
	ret = orch_execute_keyed(claim_plan, args, NULL, false, 0, InvalidSnapshot);
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
 * The reclaim, for both of its reasons: "expired", a lease that lapsed
 * (its worker died, hung, or was stopped without handing it back), and
 * "gone", a lease held by a process that no longer exists (the server
 * restarted after a crash, or the worker exited on an error), which need
 * not wait for its lapse.  Up to 100 jobs at a time go back to pending, or
 * fail past max_reclaims; each gets a history row.  WHICH selects them
 * from the in_progress rows j; WHY says what happened.
 */
#define RECLAIM_SQL(which, why) \
	"WITH r AS (SELECT j.id, j.lease_owner FROM orchestrator.sequence_jobs j" \
	"           WHERE j.status = 'in_progress' AND " which \
	"           ORDER BY j.lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED)," \
	" u AS (UPDATE orchestrator.sequence_jobs j" \
	"       SET status = CASE WHEN j.reclaims >= $2 THEN 'failed' ELSE 'pending' END," \
	"           reclaims = j.reclaims + 1," \
	"           last_error = CASE WHEN j.reclaims >= $2" \
	"                        THEN 'given up: its worker died while running it ' || (j.reclaims + 1) || ' times'" \
	"                        ELSE j.last_error END," \
	"           finished_at = CASE WHEN j.reclaims >= $2 THEN pg_catalog.clock_timestamp() END," \
	"           run_at = pg_catalog.now(), lease_owner = NULL," \
	"           lease_expires_at = NULL, updated_at = pg_catalog.clock_timestamp()" \
	"       FROM r WHERE j.id = r.id AND j.id = ANY (ARRAY(SELECT r.id FROM r))" \
	"       RETURNING j.id, j.org_id, j.current_step, j.fencing_token, j.status, j.last_error, r.lease_owner)" \
	" " HISTORY \
	" SELECT u.id, u.org_id, u.current_step, NULL, 'engine', 1," \
	"        CASE u.status WHEN 'failed' THEN 'failed' ELSE 'lease_expired' END, NULL," \
	"        CASE u.status WHEN 'failed' THEN u.last_error" \
	"             ELSE 'lease of worker pid ' || COALESCE(u.lease_owner::text, '?') || " why " END," \
	"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), $1, u.fencing_token, NULL, NULL FROM u"

static int
reclaim(SPIPlanPtr *plan, const char *sql, int max_reclaims)
{
	Datum		args[2];
	int			ret;

	if (*plan == NULL)
	{
		Oid			types[2] = {INT4OID, INT4OID};

		*plan = orch_prepare_kept(sql, 2, types);
	}
	args[0] = Int32GetDatum(MyProcPid);
	args[1] = Int32GetDatum(max_reclaims);
	ret = orch_execute_keyed(*plan, args, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator reclaim failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		orch_wake_at_commit();
	return (int) SPI_processed;
}

/*
 * orch_job_reclaim_expired reclaims up to 100 jobs whose lease has lapsed.
 */
int
orch_job_reclaim_expired(int max_reclaims)
{
	return reclaim(&reclaim_plan,
				   RECLAIM_SQL("j.lease_expires_at < pg_catalog.now()",
							   "' expired; job returned to the queue'"),
				   max_reclaims);
}

/*
 * orch_job_reclaim_orphaned reclaims up to 100 jobs leased to a process
 * that no longer exists, whatever their lease's expiry: after a crash
 * restart every lease of the old server's workers is dead, and the jobs
 * (HTTP ones too, whose lease covers the request's timeout) run again at
 * once instead of minutes later.  A process id reused since by a live
 * process leaves its jobs to the lapse of their lease.  The list of
 * processes is read once per transaction (pg_stat_get_activity keeps it),
 * so only rows last written before this transaction began are judged by
 * it: a worker that started and claimed since is not in the list, but
 * neither are its rows older than the list.
 */
int
orch_job_reclaim_orphaned(int max_reclaims)
{
	return reclaim(&orphan_plan,
				   RECLAIM_SQL("j.updated_at < pg_catalog.now()"
							   " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(NULL) a"
							   "                 WHERE a.pid = j.lease_owner)",
							   "' ended with its process; job returned to the queue'"),
				   max_reclaims);
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
	ret = orch_execute_keyed(release_plan, args, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator lease release failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		orch_wake_at_commit();
	return (int) SPI_processed;
}

/*
 * orch_job_hold_back puts n jobs this process has just claimed back in the
 * queue, unrun, to wait for a concurrency slot (flow.c): pending again,
 * due again by wait_ms at the latest (a freed slot wakes them sooner:
 * orch_job_wake), with a "deferred" history row whose error is notes[i].
 * Not an attempt; the claim's fencing token stays.  Returns how many.
 */
int
orch_job_hold_back(const OrchClaimedJob *jobs, const char **notes, int n, long wait_ms)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *tokens = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *texts = palloc(sizeof(Datum) * Max(n, 1));
	Datum		args[4];
	int			ret;

	if (n == 0)
		return 0;
	for (int i = 0; i < n; i++)
	{
		ids[i] = UUIDPGetDatum(&jobs[i].id);
		tokens[i] = Int64GetDatum(jobs[i].token);
		texts[i] = CStringGetTextDatum(notes[i]);
	}
	if (plan == NULL)
	{
		Oid			types[4] = {UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, FLOAT8OID};

		plan = orch_prepare_kept(
			"WITH v AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))"
			"           AS v(id, token, note)),"
			" u AS (UPDATE orchestrator.sequence_jobs j"
			"       SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,"
			"           run_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $4 / 1000.0),"
			"           updated_at = pg_catalog.clock_timestamp()"
			"       FROM v WHERE j.id = v.id AND j.id = ANY ($1) AND j.status = 'in_progress'"
			"         AND j.fencing_token = v.token AND j.lease_owner = pg_catalog.pg_backend_pid()"
			"       RETURNING j.id, j.org_id, j.current_step, j.attempts, j.fencing_token, v.note)"
			" " HISTORY
			" SELECT u.id, u.org_id, u.current_step, NULL, 'engine', u.attempts + 1, 'deferred', NULL, u.note,"
			"        pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.pg_backend_pid(),"
			"        u.fencing_token, NULL, NULL FROM u",
			4, types);
	}
	args[0] = orch_array_of(ids, NULL, n, UUIDOID);
	args[1] = orch_array_of(tokens, NULL, n, INT8OID);
	args[2] = orch_array_of(texts, NULL, n, TEXTOID);
	args[3] = Float8GetDatum((double) wait_ms);
	ret = orch_execute_keyed(plan, args, NULL, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "orchestrator could not hold jobs back: %s", SPI_result_code_string(ret));
	return (int) SPI_processed;
}

/*
 * orch_job_wake makes the pending jobs among ids due now, keeping their
 * place by priority, and wakes the workers at commit: a concurrency slot
 * freed or a pause lifted (flow.c), a signal sent (wait.sql), a fan-out's
 * child ended (wake_fan_in; waiting_at "fan_out": only jobs waiting at such
 * a step, NULL: any).  A job whose row another transaction holds is left
 * alone: a worker is running it and looks for itself.  Returns how many.
 */
int
orch_job_wake(Datum ids, const char *waiting_at)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	int			ret;

	if (plan == NULL)
	{
		Oid			types[2] = {UUIDARRAYOID, TEXTOID};

		plan = orch_prepare_kept(
			"UPDATE orchestrator.sequence_jobs j SET run_at = pg_catalog.now(), updated_at = pg_catalog.clock_timestamp()"
			" WHERE j.id = ANY (ARRAY(SELECT l.id FROM orchestrator.sequence_jobs l"
			"                         WHERE l.id = ANY ($1) AND l.status = 'pending' AND l.run_at > pg_catalog.now()"
			"                           AND ($2 IS NULL OR EXISTS (SELECT 1 FROM orchestrator.waits w"
			"                                                      WHERE w.job_id = l.id AND w.kind = $2))"
			"                         FOR UPDATE SKIP LOCKED))",
			2, types);
	}
	args[0] = ids;
	args[1] = waiting_at ? CStringGetTextDatum(waiting_at) : (Datum) 0;
	nulls[1] = waiting_at ? ' ' : 'n';
	ret = orch_execute_keyed(plan, args, nulls, false, 0, InvalidSnapshot);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "orchestrator could not wake jobs: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		orch_wake_at_commit();
	return (int) SPI_processed;
}

/*
 * orch_job_purge removes up to batch finished jobs (completed, failed or
 * cancelled) that were created before bound (a version 7 job id made from
 * the cutoff: the primary key's oldest range, so the scan stops at the
 * cutoff) and finished before cutoff, with everything that is only theirs:
 * their history, their event_log rows, their fan-out children records,
 * approval requests, leftover waits and the signals sent to them.  A job
 * whose parent is still running stays (a fan_out reads its children).
 * Rows another transaction holds are left for later.  Running jobs and
 * their audit trail are never touched.  Returns how many jobs it removed.
 */
int
orch_job_purge(Datum bound, TimestampTz cutoff, int batch)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[3];
	bool		isnull;

	if (plan == NULL)
	{
		Oid			types[3] = {UUIDOID, TIMESTAMPTZOID, INT4OID};

		plan = orch_prepare_kept(
			"WITH d AS (SELECT j.id FROM orchestrator.sequence_jobs j"
			"           WHERE j.id < $1 AND j.status IN ('completed', 'failed', 'cancelled') AND j.finished_at < $2"
			/* a fan-out's children stay while their parent may still read them */
			"             AND NOT EXISTS (SELECT 1 FROM orchestrator.sequence_jobs p WHERE p.id = j.parent_job_id"
			"                             AND p.status IN ('pending', 'in_progress', 'awaiting_approval'))"
			"           ORDER BY j.id LIMIT $3 FOR UPDATE SKIP LOCKED),"
			" h AS (DELETE FROM orchestrator.step_history h USING d WHERE h.job_id = d.id),"
			" w AS (DELETE FROM orchestrator.waits w USING d WHERE w.job_id = d.id),"
			" s AS (DELETE FROM orchestrator.signals s USING d WHERE s.job_id = d.id),"
			" e AS (DELETE FROM orchestrator.event_log e USING d WHERE e.job_id = d.id),"
			" f AS (DELETE FROM orchestrator.fan_children c USING d WHERE c.job_id = d.id),"
			" a AS (DELETE FROM orchestrator.slack_pending_actions a USING d WHERE a.job_id = d.id),"
			" x AS (DELETE FROM orchestrator.sequence_jobs j USING d WHERE j.id = d.id RETURNING 1)"
			" SELECT pg_catalog.count(*)::integer FROM x",
			3, types);
	}
	args[0] = bound;
	args[1] = TimestampTzGetDatum(cutoff);
	args[2] = Int32GetDatum(batch);
	return DatumGetInt32(orch_exec_scalar(plan, args, NULL, &isnull, "job purge"));
}
