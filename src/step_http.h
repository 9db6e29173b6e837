/*-------------------------------------------------------------------------
 *
 * step_http.h
 *	  Requests of http and notify steps and of endpoint context sources,
 *	  and reading their responses (step_http.c).
 *
 * src/step_http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_STEP_HTTP_H
#define ORCH_STEP_HTTP_H

#include "http.h"
#include "job_state.h"
#include "utils/jsonb.h"

/* Which step, or context source, of which job a request serves. */
typedef struct OrchStepRequest
{
	OrchClaimedJob job;
	int			step_index;
	int			attempt;
	char	   *step_name;
	char	   *kind;			/* http or notify */
	char	   *endpoint;
	int			context_tier;	/* a context source's request: its tier */
	char	   *context_name;	/* ... and name; NULL for a step's own */
} OrchStepRequest;

/* the job bookkeeping of a request prepared here */
static inline OrchStepRequest *
orch_step_request(OrchHttpRequest *req)
{
	return (OrchStepRequest *) req->owner;
}

extern OrchHttpRequest *orch_step_http_begin(const OrchClaimedJob *job, Jsonb *step, Jsonb *state,
											 Oid run_as, OrchStepRecord *r);
extern void orch_step_http_end(OrchHttpRequest *resume, OrchStepRecord *r);
extern OrchHttpRequest *orch_context_http_prepare(const OrchClaimedJob *job, int step_index,
												  const char *source, int tier, const char *endpoint,
												  Jsonb *state);
extern Jsonb *orch_step_http_result(OrchHttpRequest *req, TimestampTz *defer_until);
extern void orch_step_notify_record(OrchHttpRequest *req, bool ok, const char *ts);

#endif							/* ORCH_STEP_HTTP_H */
