/*-------------------------------------------------------------------------
 *
 * job_state.h
 *	  A job's status and every change of it: the one owner of job state.
 *
 * job_state.c is the only code that writes sequence_jobs' status, lease
 * and fencing columns and the only code that inserts step_history rows.
 * Everything else asks it for a transition (see src/README.md for the
 * state diagram).
 *
 * src/job_state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_JOB_STATE_H
#define ORCH_JOB_STATE_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/*
 * A pending job j's place in the claim order, as the index
 * sequence_jobs_runnable has it (flow.c: run_at less a minute per point of
 * priority).
 */
#define CLAIM_ORDER "orchestrator.claim_order(j.run_at, j.priority)"

/* sequence_jobs.status; the order is the legality table's (job_state.c) */
typedef enum OrchJobStatus
{
	ORCH_JOB_PENDING,
	ORCH_JOB_IN_PROGRESS,
	ORCH_JOB_AWAITING_APPROVAL,
	ORCH_JOB_COMPLETED,
	ORCH_JOB_FAILED,
	ORCH_JOB_CANCELLED
} OrchJobStatus;

#define ORCH_JOB_NSTATUS (ORCH_JOB_CANCELLED + 1)

/* A job this worker holds a lease on: its id and the claim's fencing token. */
typedef struct OrchClaimedJob
{
	pg_uuid_t	id;
	int64		token;
} OrchClaimedJob;

/* What an attempt at a step came to (step_history.outcome). */
typedef enum OrchStepOutcome
{
	ORCH_STEP_SUCCEEDED,
	ORCH_STEP_SKIPPED,
	ORCH_STEP_FAILED,
	ORCH_STEP_RETRY,
	ORCH_STEP_DEFERRED,			/* 429, quiet hours, rate limit: not an attempt */
	ORCH_STEP_AWAITING,			/* approval gate reached; the job waits for the rep */
	ORCH_STEP_PARKED			/* request sent; nothing is recorded until it ends */
} OrchStepOutcome;

/*
 * One step attempt as it is recorded: its history row, and what it changes
 * in the job (folded into the state by orchestrator.advance_state).
 */
typedef struct OrchStepRecord
{
	int			step_index;
	const char *step_name;
	const char *kind;
	int			attempt;
	OrchStepOutcome outcome;
	long		http_status;	/* 0: no HTTP response */
	Jsonb	   *followups;		/* follow-ups the step queued, or NULL */
	double		cost_usd;		/* what an ai step reported spending */
	const char *scope;			/* user or service: how its function ran */
	Jsonb	   *output;			/* NULL unless succeeded (or the gate opened) */
	const char *error;			/* NULL unless failed or deferred */
	TimestampTz started_at;
	TimestampTz finished_at;
	int			next_step;
	OrchJobStatus job_status;	/* status the job is left in */
	int			job_attempts;
	TimestampTz run_at;			/* 0: unchanged */
} OrchStepRecord;

/* The kinds of single-job transition; claims and reclaims are set-based. */
typedef enum OrchTransitionKind
{
	ORCH_TRANSITION_STEP,		/* a step attempt recorded (step) */
	ORCH_TRANSITION_CONTEXT,	/* a context source stored (context) */
	ORCH_TRANSITION_PARK,		/* lease stretched over an HTTP request */
	ORCH_TRANSITION_CONTINUE,	/* time slice used: back to pending */
	ORCH_TRANSITION_FAIL,		/* an error outside any step */
	ORCH_TRANSITION_OPERATOR	/* cancel, retry, an approval decision */
} OrchTransitionKind;

/*
 * One transition of one job.  The worker's kinds carry the lease's fencing
 * token and apply only while the job is in_progress under it; an operator
 * transition applies only while the job is still in "from" (its caller
 * holds the row lock).  applied and state are outputs.
 */
typedef struct OrchJobTransition
{
	OrchTransitionKind kind;
	pg_uuid_t	job_id;
	int64		token;
	OrchJobStatus from;
	OrchJobStatus to;

	const OrchStepRecord *step; /* STEP */

	/* CONTEXT: source "name" of "tier" loaded before step_index */
	int			step_index;		/* also CONTINUE: the step it resumes at */
	int			tier;
	const char *name;
	Jsonb	   *data;
	const char *error;			/* also FAIL */
	TimestampTz started_at;
	long		http_status;

	long		lease_ms;		/* PARK */

	/*
	 * OPERATOR: the new state, made under the row lock; STEP: the state
	 * the step ran on, which its result is folded into
	 */
	Jsonb	   *context;

	/* OPERATOR: -1 or NULL leave a column as it is */
	int			current_step;
	int			attempts;
	int			reclaims;
	bool		new_token;		/* fence off whoever holds the old one */
	bool		clear_error;
	const char *history_kind;	/* operator or approval */
	const char *outcome;
	const char *step_name;
	Jsonb	   *output;
	const char *note;

	bool		applied;		/* out: the job was where it should be */
	Jsonb	   *state;			/* out (STEP, CONTEXT): the job's new state */
} OrchJobTransition;

extern OrchJobStatus orch_job_status_from_name(const char *name);

/* Each runs in the caller's transaction with SPI connected. */
extern void orch_job_worker_transition(OrchJobTransition *t, OrchTransitionKind kind,
									   const OrchClaimedJob *job, OrchJobStatus to);
extern void orch_job_transition(OrchJobTransition *t, int n);
extern void orch_job_lock(const OrchClaimedJob *jobs, int n);
extern bool orch_job_hold_begin(void);
extern void orch_job_hold_end(void);
extern void orch_job_hold_forget(const pg_uuid_t *job_id);
extern void orch_job_write_held(const pg_uuid_t *job_id);
extern pg_uuid_t orch_job_create(Datum org_id, Datum user_id, Datum type, Datum source, int32 version,
								 TimestampTz run_at, Jsonb *payload, Datum parent_job_id, bool has_parent,
								 int32 chain_depth, Datum dedupe_hash, int32 priority);
extern pg_uuid_t orch_job_fork(const pg_uuid_t *from, int32 step_index, const char *step_name, Jsonb *state,
							   const char *how);

/*
 * A batch of submitted events of one type, source and org, each decided by
 * submit.c: new[i] events become jobs (job_ids[i] is set for them), the
 * others are logged with their outcome (a duplicate with the job it
 * duplicates).  Payloads are stored as given (transcripts stripped).
 */
typedef struct OrchEventBatch
{
	int			n;
	Datum		org_id;
	Datum		type;
	Datum		source;
	int32		version;
	Datum	   *user_ids;
	Jsonb	  **payloads;
	Datum	   *dedupe_hashes;
	const char **outcomes;
	const char **reasons;		/* NULL: none */
	TimestampTz *run_ats;		/* new jobs only */
	bool	   *new;
	bool	   *has_job;
	pg_uuid_t  *job_ids;		/* the new job's, or the duplicated one's */
} OrchEventBatch;

extern void orch_job_create_batch(OrchEventBatch *b);
extern int	orch_job_claim(OrchClaimedJob *jobs, int max, long lease_ms);
extern int	orch_job_reclaim_expired(int max_reclaims);
extern int	orch_job_reclaim_orphaned(int max_reclaims);
extern int	orch_job_release(void);
extern int	orch_job_hold_back(const OrchClaimedJob *jobs, const char **notes, int n, long wait_ms);
extern int	orch_job_wake(Datum ids, const char *waiting_at);
extern int	orch_job_purge(Datum bound, TimestampTz cutoff, int batch);

#endif							/* ORCH_JOB_STATE_H */
