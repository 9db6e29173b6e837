/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Configuration: the orchestrator.* settings (guc.c).
 *
 * src/guc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_GUC_H
#define ORCH_GUC_H

/* Hard upper bound on orchestrator.workers (sizes shared memory). */
#define ORCH_MAX_WORKERS 64

extern int	orch_workers;
extern char *orch_database;
extern int	orch_max_payload_bytes;
extern int	orch_max_json_depth;
extern int	orch_dedupe_window_ms;
extern int	orch_batch_size;
extern int	orch_lease_ms;
extern int	orch_max_inflight;
extern int	orch_max_reclaims;
extern int	orch_max_slice_ms;
extern int	orch_max_response_bytes;
extern char *orch_user_role;
extern int	orch_approval_timeout_s;
extern int	orch_approval_timeout_action;
extern int	orch_retention_s;
extern int	orch_retention_batch;

/* orchestrator.approval_timeout_action */
typedef enum OrchApprovalTimeoutAction
{
	ORCH_APPROVAL_TIMEOUT_SKIP,
	ORCH_APPROVAL_TIMEOUT_CANCEL,
	ORCH_APPROVAL_TIMEOUT_FAIL
} OrchApprovalTimeoutAction;

extern void orch_guc_init(void);

#endif							/* ORCH_GUC_H */
