/*-------------------------------------------------------------------------
 *
 * approval.c
 *	  Approval gates (HITL), the worker's and the submitter's side.
 *
 * The seed's Step 5: a step with requires_approval and no decision yet is
 * not run.  orch_approval_open opens its gate (orchestrator.open_approval,
 * approval.sql): a slack_pending_actions row holding what is needed to
 * resume, the Slack message rendered from a HITL pattern and queued for
 * delivery, all in the job's transaction; the step loop then moves the job
 * to awaiting_approval (job_state.c).  The rep's decision comes back as
 * orch_resolve_approval or as a slack_approval_received event, which
 * orch_submit_event hands to orch_approval_received; both end in
 * orchestrator.resolve_approval, which applies it once under row locks and
 * moves the job on through orchestrator.transition_job.
 *
 * Everything here runs in the caller's transaction with SPI connected.
 *
 * src/approval.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "approval.h"
#include "util.h"

static SPIPlanPtr open_plan = NULL;
static SPIPlanPtr received_plan = NULL;

/*
 * orch_approval_granted: the rep approved (or edited and approved) the
 * step of this name.
 */
bool
orch_approval_granted(Jsonb *state, const char *step_name)
{
	Jsonb	   *decision = orch_jsonb_get(orch_jsonb_get(state, "approvals"), step_name);
	char	   *action = orch_jsonb_get_text(decision, "action");

	return action != NULL && (strcmp(action, "approve") == 0 || strcmp(action, "edit") == 0);
}

/*
 * orch_approval_expired: nobody answered the step's approval in time and
 * its on_timeout is fail: the step fails instead of asking again.
 */
bool
orch_approval_expired(Jsonb *state, const char *step_name)
{
	Jsonb	   *decision = orch_jsonb_get(orch_jsonb_get(state, "approvals"), step_name);
	char	   *action = orch_jsonb_get_text(decision, "action");

	return action != NULL && strcmp(action, "expire") == 0;
}

/*
 * orch_approval_expire_due resolves the approval requests whose time ran
 * out (orchestrator.expire_approvals); the worker calls it once a second.
 */
int
orch_approval_expire_due(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int			n;

	if (plan == NULL)
		plan = orch_prepare_kept("SELECT orchestrator.expire_approvals()", 0, NULL);
	n = DatumGetInt32(orch_exec_scalar(plan, NULL, NULL, &isnull, "approval expiry"));
	if (n > 0)
		ereport(LOG,
				(errmsg("orchestrator expired %d approval request(s) nobody answered in time", n)));
	return n;
}

/*
 * orch_approval_open opens the gate of the step at step_index and returns
 * what the history and the state record about it.
 */
Jsonb *
orch_approval_open(const OrchClaimedJob *job, int step_index, Jsonb *step, Jsonb *state)
{
	Datum		args[4];
	bool		isnull;

	if (open_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, INT4OID, JSONBOID, JSONBOID};

		open_plan = orch_prepare_kept("SELECT orchestrator.open_approval($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = Int32GetDatum(step_index);
	args[2] = JsonbPGetDatum(step);
	args[3] = JsonbPGetDatum(state);
	return DatumGetJsonbP(orch_exec_scalar(open_plan, args, NULL, &isnull, "approval gate"));
}

/*
 * copy_out copies a text value of an SPI result into the memory context
 * that was current at SPI_connect, so it outlives SPI_finish.
 */
static const char *
copy_out(Datum d, bool isnull)
{
	char	   *s;
	char	   *out;

	if (isnull)
		return NULL;
	s = TextDatumGetCString(d);
	out = SPI_palloc(strlen(s) + 1);
	strcpy(out, s);
	return out;
}

/*
 * orch_approval_received applies a slack_approval_received event: the
 * approval it names is resolved as the event's user
 * (orchestrator.approval_received).  Resolved: accepted, with the resumed
 * job; already resolved: duplicate; the job no longer waiting: skipped,
 * with the reason.  outcome and reason are the caller's to read after
 * SPI_finish.
 */
void
orch_approval_received(Jsonb *payload, Datum user_id, const char **outcome, const char **reason,
					   pg_uuid_t *job_id, bool *have_job)
{
	Datum		args[2];
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;

	if (received_plan == NULL)
	{
		Oid			types[2] = {JSONBOID, UUIDOID};

		received_plan = orch_prepare_kept(
			"SELECT outcome, job_id, reason FROM orchestrator.approval_received($1, $2)", 2, types);
	}
	args[0] = JsonbPGetDatum(payload);
	args[1] = user_id;
	ret = SPI_execute_plan(received_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator approval resolution failed: %s", SPI_result_code_string(ret));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	/* the value first: the order of a call's arguments is unspecified */
	d = SPI_getbinval(tup, desc, 1, &isnull);
	*outcome = copy_out(d, isnull);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	if (!isnull)
	{
		memcpy(job_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
		*have_job = true;
	}
	d = SPI_getbinval(tup, desc, 3, &isnull);
	*reason = copy_out(d, isnull);
}
