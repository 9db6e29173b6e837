/*-------------------------------------------------------------------------
 *
 * approval.h
 *	  Approval gates (HITL): opening a gate, and the rep's decision
 *	  arriving as an event (approval.c, approval.sql).
 *
 * src/approval.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_APPROVAL_H
#define ORCH_APPROVAL_H

#include "job_state.h"

/* The event type a Slack button click arrives as. */
#define ORCH_APPROVAL_EVENT "slack_approval_received"

extern bool orch_approval_granted(Jsonb *state, const char *step_name);
extern bool orch_approval_expired(Jsonb *state, const char *step_name);
extern int	orch_approval_expire_due(void);
extern Jsonb *orch_approval_open(const OrchClaimedJob *job, int step_index, Jsonb *step, Jsonb *state);
extern void orch_approval_received(Jsonb *payload, Datum user_id, const char **outcome,
								   const char **reason, pg_uuid_t *job_id, bool *have_job);

#endif							/* ORCH_APPROVAL_H */
