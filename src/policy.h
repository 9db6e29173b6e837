/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  Where a job goes after a step: on_failure, retries, stays and the
 *	  time slice (policy.c).
 *
 * src/policy.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_POLICY_H
#define ORCH_POLICY_H

#include "job_state.h"

extern void orch_policy_stay(OrchStepRecord *r, int current_step, int job_attempts, OrchJobStatus job_status);
extern void orch_policy_after_step(Jsonb *step, OrchStepRecord *r, int current_step, int nsteps,
								   int job_attempts);
extern bool orch_policy_slice_used(TimestampTz slice_start);
extern char *orch_policy_continuation_note(int step_index);

#endif							/* ORCH_POLICY_H */
