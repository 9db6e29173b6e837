/*-------------------------------------------------------------------------
 *
 * orchestrator.h
 *	  Declarations shared between the orchestrator's source files.
 *
 * Each .c file owns one responsibility (see the comment atop each); this
 * header only carries what crosses file boundaries: GUC variables, the
 * shared-memory wake registry, the claimed-job record and the entry points
 * of claiming, step execution and write-back.
 *
 * src/orchestrator.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_H
#define ORCHESTRATOR_H

#include "postgres.h"

#include <signal.h>

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* The engine's own event types (notices, approval requests) start so. */
#define ORCH_ENGINE_EVENT_PREFIX "orchestrator:"

static inline bool
orch_is_engine_event(const char *type, int len)
{
	int			plen = (int) strlen(ORCH_ENGINE_EVENT_PREFIX);

	return len > plen && strncmp(type, ORCH_ENGINE_EVENT_PREFIX, plen) == 0;
}

/* Hard upper bound on orchestrator.workers (sizes shared memory). */
#define ORCH_MAX_WORKERS 64

/* guc.c */
extern int	orch_workers;
extern char *orch_database;
extern int	orch_max_payload_bytes;
extern int	orch_dedupe_window_ms;
extern int	orch_batch_size;
extern int	orch_lease_ms;
extern int	orch_max_inflight;
extern int	orch_max_reclaims;
extern int	orch_max_slice_ms;
extern int	orch_max_response_bytes;
extern char *orch_user_role;
extern void orch_guc_init(void);

/* shmem.c */
extern void orch_shmem_init(void);
extern void orch_shmem_register_worker(int index);
extern void orch_shmem_unregister_worker(int index);
extern void orch_shmem_wake_all(void);
extern bool orch_preloaded;

/* wake.c */
extern void orch_wake_init(void);
extern void orch_wake_at_commit(void);

/* auth.c: who is calling */
extern bool orch_caller_user(pg_uuid_t *user_id);
extern bool orch_caller_is_admin(void);
extern void orch_check_acting_for(const pg_uuid_t *user_id, const char *what);

/* redact.c: emails and tokens masked in stored errors and the server log */
extern char *orch_redact(const char *text);
extern void orch_redact_log_init(void);

/* util.c: helpers shared by several files */
struct _SPI_plan;
extern struct _SPI_plan *orch_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern ErrorData *orch_in_subxact(void (*fn) (void *arg), void *arg);
extern Datum orch_exec_scalar(struct _SPI_plan *plan, Datum *args, const char *nulls,
							  bool *isnull, const char *what);
extern char *orch_uuid_str(const pg_uuid_t *id);
extern Jsonb *orch_jsonb_get(Jsonb *obj, const char *key);
extern char *orch_jsonb_get_text(Jsonb *obj, const char *key);
extern int	orch_jsonb_get_int(Jsonb *obj, const char *key, int default_value);
extern bool orch_jsonb_get_bool(Jsonb *obj, const char *key);
extern Jsonb *orch_jsonb_array_get(Jsonb *array, int index);
extern bool orch_jsonpath_truthy(Jsonb *target, const char *path);

/* A job this worker holds a lease on. */
typedef struct OrchClaimedJob
{
	pg_uuid_t	id;
	int64		token;
} OrchClaimedJob;

/*
 * One HTTP request of an http or notify step, from the transaction that
 * prepared it, through curl, to the transaction that writes its result.
 * Lives in its own memory context under TopMemoryContext.
 */
typedef struct OrchHttpRequest
{
	dlist_node	node;
	MemoryContext context;

	/* which step of which job */
	OrchClaimedJob job;
	int			step_index;
	int			attempt;
	char	   *step_name;
	char	   *kind;
	char	   *endpoint;
	int			context_tier;	/* a context source's request: its tier */
	char	   *context_name;	/* ... and name; NULL for a step's own */

	/* the request */
	char	   *url;
	long		timeout_ms;
	char	  **headers;		/* "Name: value", secrets substituted */
	int			nheaders;
	char	   *body;
	char	   *idempotency_key;
	char	  **secrets;		/* values to scrub from whatever comes back */
	int			nsecrets;

	/* the transfer (curl types kept opaque here) */
	void	   *easy;
	void	   *curl_headers;
	TimestampTz prepared_at;
	TimestampTz finished_at;

	/* the response */
	int			result;			/* CURLcode */
	long		status;
	char	   *resp;			/* malloc'ed, NUL-terminated */
	size_t		resp_len;
	size_t		resp_cap;
	bool		too_large;
	char		retry_after[128];
	char		location[512];
	char		errbuf[256];	/* CURL_ERROR_SIZE */
} OrchHttpRequest;

/* http.c: libcurl multi in the worker's wait */
extern void orch_http_init(void);
extern int	orch_http_wait_fd(void);
extern long orch_http_timeout(void);
extern int	orch_http_inflight(void);
extern int	orch_http_room(void);
extern int	orch_http_max_seen_inflight(void);
extern OrchHttpRequest *orch_http_new_request(void);
extern void orch_http_start(OrchHttpRequest *req);
extern void orch_http_drive(void);
extern bool orch_http_has_done(void);
extern OrchHttpRequest *orch_http_take_done(void);
extern void orch_http_free(OrchHttpRequest *req);
extern void orch_http_abort_all(void);

/* step_http.c: http and notify steps' requests and responses */
extern OrchHttpRequest *orch_step_http_prepare(const OrchClaimedJob *job, int step_index, int attempt,
											   Jsonb *step, Jsonb *state, Jsonb *message,
											   TimestampTz *defer_until, const char **defer_reason);
extern Jsonb *orch_step_http_result(OrchHttpRequest *req, TimestampTz *defer_until);
extern void orch_step_notify_record(OrchHttpRequest *req, bool ok, const char *ts);

/* claim.c: each runs inside a transaction with SPI connected. */
extern int	orch_reclaim_expired(void);
extern int	orch_claim_jobs(OrchClaimedJob *jobs, int max);
extern int	orch_release_leases(void);
extern TimestampTz orch_next_wakeup(bool *contended);

/* step.c: runs a claimed job's steps inside the current transaction. */
extern void orch_run_job(const OrchClaimedJob *job, OrchHttpRequest *resume, OrchHttpRequest **parked);

/* context.c: context tiers 2 and 3 */
extern Jsonb *orch_context_load(const OrchClaimedJob *job, int step_index, Jsonb *step, Jsonb *state,
								OrchHttpRequest **parked);
extern Jsonb *orch_context_resume(const OrchClaimedJob *job, OrchHttpRequest *resume);

/* followup.c */
extern Jsonb *orch_queue_followups(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, Jsonb *output);

/* step_sql.c */
extern Jsonb *orch_step_sql_execute(const char *fname, const char *scope, Jsonb *state, Oid run_as,
									int timeout_ms, const char **scope_out);
extern volatile sig_atomic_t orch_step_running;

/* writeback.c: one step's result, under the job's fencing token. */
typedef enum OrchStepOutcome
{
	ORCH_STEP_SUCCEEDED,
	ORCH_STEP_SKIPPED,
	ORCH_STEP_FAILED,
	ORCH_STEP_RETRY,
	ORCH_STEP_DEFERRED,			/* 429, quiet hours, rate limit: not an attempt */
	ORCH_STEP_PARKED,			/* request sent; the job waits for its response */
	ORCH_STEP_AWAITING			/* approval gate reached; the job waits for the rep */
} OrchStepOutcome;

typedef struct OrchStepResult
{
	int			step_index;
	const char *step_name;
	const char *kind;
	int			attempt;
	OrchStepOutcome outcome;
	bool		interrupted;	/* cancelled by SIGTERM: nothing to write */
	long		http_status;	/* 0: no HTTP response */
	Jsonb	   *followups;		/* follow-ups the step queued, or NULL */
	double		cost_usd;		/* what an ai step reported spending */
	const char *scope;			/* user or service: how its function ran */
	bool		halted;			/* over budget: the whole sequence stops */
	OrchHttpRequest *request;	/* PARKED: the request to send */
	Jsonb	   *output;			/* NULL unless succeeded */
	const char *error;			/* NULL unless failed */
	TimestampTz started_at;
	TimestampTz finished_at;
	int			next_step;
	const char *job_status;		/* status the job is left in */
	int			job_attempts;
	TimestampTz run_at;			/* 0: unchanged */
} OrchStepResult;

extern Jsonb *orch_write_step_result(const OrchClaimedJob *job, const OrchStepResult *r);
extern void orch_write_job_failure(const OrchClaimedJob *job, const char *error);
extern bool orch_write_park(const OrchClaimedJob *job, long lease_ms);
extern bool orch_write_continuation(const OrchClaimedJob *job, int next_step);

/* worker.c */
extern void orch_worker_register(void);
PGDLLEXPORT void orch_worker_main(Datum main_arg);

#endif							/* ORCHESTRATOR_H */
