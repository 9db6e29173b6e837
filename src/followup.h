/*-------------------------------------------------------------------------
 *
 * followup.h
 *	  Events a step queues: its follow-ups, and the failure notice of a
 *	  halted sequence (followup.c).
 *
 * src/followup.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_FOLLOWUP_H
#define ORCH_FOLLOWUP_H

#include "job_state.h"

extern Jsonb *orch_queue_followups(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, Jsonb *output);
extern void orch_notify_failure(const OrchClaimedJob *job, Jsonb *state, const char *step_name,
								const char *error);

#endif							/* ORCH_FOLLOWUP_H */
