/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Where a job goes after a step: on_failure, retries with backoff,
 *	  gates that stop the job where it is, and the fairness time slice.
 *
 * After each step the step loop (step.c) asks orch_policy_after_step what
 * the step's outcome means for the job: the next step, or completed; a
 * deferral (429, quiet hours, rate limit) that is neither a failure nor an
 * attempt; or a failure decided by the step's on_failure: stop, continue,
 * or retry with exponential backoff (retry.backoff_ms doubled per
 * attempt, at most a week) done through run_at, never by sleeping, until
 * retry.attempts are used up.  The answer is filled into the step's
 * record, which job_state.c then applies.  Nothing here touches the
 * database.
 *
 * Time slices: the seed's 150 s edge timeout becomes a fairness slice; a
 * job that has run for orchestrator.max_slice is checkpointed between
 * steps and queued again as an orchestrator:continuation.
 *
 * src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/timestamp.h"

#include "guc.h"
#include "policy.h"
#include "util.h"

/*
 * orch_policy_stay leaves the job at its current step, its attempts
 * unchanged, in job_status (an approval gate, a budget halt, a deferral).
 */
void
orch_policy_stay(OrchStepRecord *r, int current_step, int job_attempts, OrchJobStatus job_status)
{
	r->finished_at = GetCurrentTimestamp();
	r->next_step = current_step;
	r->job_attempts = job_attempts;
	r->job_status = job_status;
}

/*
 * orch_policy_after_step decides, from a finished step's outcome and its
 * on_failure, where the job goes next: r's next_step, job_status,
 * job_attempts and run_at.  A failure that will be retried becomes
 * ORCH_STEP_RETRY.
 */
void
orch_policy_after_step(Jsonb *step, OrchStepRecord *r, int current_step, int nsteps, int job_attempts)
{
	char	   *on_failure = orch_jsonb_get_text(step, "on_failure");
	Jsonb	   *retry = orch_jsonb_get(step, "retry");
	int			max_attempts = orch_jsonb_get_int(retry, "attempts", 1);
	int			backoff_ms = orch_jsonb_get_int(retry, "backoff_ms", 1000);
	bool		last;

	r->next_step = current_step + 1;
	r->job_attempts = 0;
	last = (r->next_step >= nsteps);

	if (r->outcome == ORCH_STEP_DEFERRED)
		orch_policy_stay(r, current_step, job_attempts, ORCH_JOB_PENDING);	/* not a failure, not an attempt */
	else if (r->outcome != ORCH_STEP_FAILED)
		r->job_status = last ? ORCH_JOB_COMPLETED : ORCH_JOB_IN_PROGRESS;
	else if (on_failure && strcmp(on_failure, "retry") == 0 && r->attempt < max_attempts)
	{
		double		delay_ms = (double) backoff_ms * pow(2.0, (double) (r->attempt - 1));

		r->outcome = ORCH_STEP_RETRY;
		r->next_step = current_step;
		r->job_attempts = r->attempt;
		r->job_status = ORCH_JOB_PENDING;
		r->run_at = TimestampTzPlusMilliseconds(r->finished_at, (int64) Min(delay_ms, 86400000.0 * 7));
	}
	else if (on_failure && strcmp(on_failure, "continue") == 0)
		r->job_status = last ? ORCH_JOB_COMPLETED : ORCH_JOB_IN_PROGRESS;
	else
	{
		/* stop, or retry with its attempts used up */
		r->next_step = current_step;
		r->job_attempts = r->attempt;
		r->job_status = ORCH_JOB_FAILED;
	}
}

/*
 * orch_policy_slice_used: the job has run for orchestrator.max_slice since
 * slice_start, and is checkpointed.
 */
bool
orch_policy_slice_used(TimestampTz slice_start)
{
	return orch_max_slice_ms > 0 &&
		TimestampDifferenceExceeds(slice_start, GetCurrentTimestamp(), orch_max_slice_ms);
}

/* what the history says of a continuation at step_index */
char *
orch_policy_continuation_note(int step_index)
{
	return psprintf("orchestrator:continuation: time slice of %d ms used; re-queued at step %d",
					orch_max_slice_ms, step_index + 1);
}
