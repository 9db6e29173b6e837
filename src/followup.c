/*-------------------------------------------------------------------------
 *
 * followup.c
 *	  Events a step queues: its follow-ups ("followups", the seed's
 *	  chaining) and the failure notice of a sequence it halted.
 *
 * After a step succeeds, inside its subtransaction (so the follow-ups commit
 * with the step or not at all), orchestrator.queue_followups selects items
 * from the state with each follow-up's jsonpath for_each and submits one
 * event per item through orch_submit_event with this job as parent:
 * chain depth (at most 3), dedupe and quiet hours apply, and the child is
 * linked both ways (parent_job_id, event_chain.children).  What happened
 * is returned for the state's queued_followups and the audit counters.
 *
 * When a step stops its sequence (on_failure stop, or retries used up),
 * the seed says to "notify the user via Slack with error context":
 * orch_notify_failure queues orchestrator:failure_notice in the failing
 * job's transaction (orchestrator.failure_notice).
 *
 * src/followup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "followup.h"
#include "util.h"

static SPIPlanPtr followup_plan = NULL;
static SPIPlanPtr failure_plan = NULL;

/*
 * orch_queue_followups queues the step's follow-ups and returns them as a
 * jsonb array (NULL when the step declares none).
 */
Jsonb *
orch_queue_followups(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, Jsonb *output)
{
	Datum		args[4];
	bool		isnull;
	Datum		d;

	if (orch_jsonb_get(step, "followups") == NULL)
		return NULL;

	if (followup_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, JSONBOID, JSONBOID, JSONBOID};

		followup_plan = orch_prepare_kept(
			"SELECT orchestrator.queue_followups($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = JsonbPGetDatum(step);
	args[2] = JsonbPGetDatum(state);
	args[3] = JsonbPGetDatum(output);
	d = orch_exec_scalar(followup_plan, args, NULL, &isnull, "follow-up queueing");
	return isnull ? NULL : DatumGetJsonbP(d);
}

/*
 * orch_notify_failure queues the Slack notice of a sequence halted at
 * step_name with error (redacted on the way).
 */
void
orch_notify_failure(const OrchClaimedJob *job, Jsonb *state, const char *step_name, const char *error)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;

	if (failure_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, JSONBOID, TEXTOID, TEXTOID};

		failure_plan = orch_prepare_kept("SELECT orchestrator.failure_notice($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = JsonbPGetDatum(state);
	args[2] = CStringGetTextDatum(step_name);
	args[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[3] = error ? ' ' : 'n';
	(void) orch_exec_scalar(failure_plan, args, nulls, &isnull, "failure notice");
}
