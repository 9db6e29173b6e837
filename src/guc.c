/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The orchestrator.* configuration parameters.
 *
 * Owns every DefineCustom*Variable call and nothing else.  Parameters that
 * size shared memory or the worker set are PGC_POSTMASTER; loop knobs are
 * PGC_SIGHUP (workers reload them on SIGHUP); limits that protect the server
 * from callers are PGC_SUSET so an ordinary role cannot lift them.
 *
 * src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"

int			orch_workers = 1;
char	   *orch_database = NULL;
int			orch_max_payload_bytes = 1024 * 1024;
int			orch_max_json_depth = 64;
int			orch_dedupe_window_ms = 5 * 60 * 1000;
int			orch_batch_size = 32;
int			orch_lease_ms = 60 * 1000;
int			orch_max_inflight = 1000;
int			orch_max_reclaims = 3;
int			orch_max_slice_ms = 30 * 1000;
int			orch_max_response_bytes = 1024 * 1024;
char	   *orch_user_role = NULL;
int			orch_approval_timeout_s = 0;
int			orch_retention_s = 0;
int			orch_retention_batch = 1000;
int			orch_approval_timeout_action = ORCH_APPROVAL_TIMEOUT_CANCEL;

static const struct config_enum_entry approval_timeout_actions[] = {
	{"skip", ORCH_APPROVAL_TIMEOUT_SKIP, false},
	{"cancel", ORCH_APPROVAL_TIMEOUT_CANCEL, false},
	{"fail", ORCH_APPROVAL_TIMEOUT_FAIL, false},
	{NULL, 0, false}
};

/*
 * define_postmaster_gucs defines the parameters that size the worker set.
 */
static void
define_postmaster_gucs(void)
{
	DefineCustomIntVariable("orchestrator.workers",
							"Number of background workers that run jobs.",
							NULL,
							&orch_workers,
							1, 0, ORCH_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("orchestrator.database",
							   "Database in which the workers run jobs.",
							   NULL,
							   &orch_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
}

/*
 * orch_guc_init defines the parameters and reserves the prefix.
 */
void
orch_guc_init(void)
{
	/*
	 * PGC_POSTMASTER parameters can only be defined while the postmaster
	 * loads the library; loaded later (no preload) there are no workers to
	 * configure anyway.
	 */
	if (process_shared_preload_libraries_in_progress)
		define_postmaster_gucs();

	DefineCustomIntVariable("orchestrator.max_payload_bytes",
							"Largest event payload orch_submit_event accepts.",
							NULL,
							&orch_max_payload_bytes,
							1024 * 1024, 2, INT_MAX / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_json_depth",
							"Deepest nesting of arrays and objects accepted in an event payload or a step's output.",
							"A deeper value is an error, SQLSTATE 54J01.",
							&orch_max_json_depth,
							64, 2, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.dedupe_window",
							"Time within which an identical event is a duplicate.",
							NULL,
							&orch_dedupe_window_ms,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.batch_size",
							"Most jobs a worker claims in one transaction.",
							NULL,
							&orch_batch_size,
							32, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.lease_duration",
							"How long a claimed job stays leased to its worker without renewal.",
							NULL,
							&orch_lease_ms,
							60 * 1000, 100, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_reclaims",
							"Times a job is taken back from a dead worker before it is failed.",
							NULL,
							&orch_max_reclaims,
							3, 0, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_slice",
							"Time a job may run in one go before it is checkpointed and queued again (0: no limit).",
							NULL,
							&orch_max_slice_ms,
							30 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_inflight",
							"Most HTTP requests one worker keeps in flight at once.",
							NULL,
							&orch_max_inflight,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_response_bytes",
							"Largest HTTP response body a step accepts.",
							NULL,
							&orch_max_response_bytes,
							1024 * 1024, 1024, INT_MAX / 2,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("orchestrator.user_role",
							   "Role user-scoped step functions run as (empty: the sequence's definer).",
							   "Set it to the role RLS policies are written for, e.g. authenticated on Supabase; "
							   "request.jwt.claims names the job's user either way.",
							   &orch_user_role,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.approval_timeout",
							"How long an approval request waits for an answer before it expires (0: forever).",
							"A step's \"approval\": {\"timeout\": ...} overrides it.",
							&orch_approval_timeout_s,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("orchestrator.approval_timeout_action",
							 "What an expired approval does: skip the step, cancel the job, or fail the step.",
							 "A step's \"approval\": {\"on_timeout\": ...} overrides it.",
							 &orch_approval_timeout_action,
							 ORCH_APPROVAL_TIMEOUT_CANCEL,
							 approval_timeout_actions,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.retention",
							"How long finished jobs, their history and events, notifications and signals are kept (0: forever).",
							"The first worker removes older ones in batches; orch_purge does it from pg_cron.",
							&orch_retention_s,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.retention_batch",
							"Most rows of each kind one retention batch removes, in one short transaction.",
							NULL,
							&orch_retention_batch,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("orchestrator");
}
