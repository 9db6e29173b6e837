/*-------------------------------------------------------------------------
 *
 * step_http.c
 *	  Steps of kind "http" and "notify": their requests and responses.
 *
 * Preparing (inside the step's subtransaction, in the run transaction):
 * orchestrator.http_request builds the URL, timeout, headers (secrets
 * substituted) and the JSON body from the state; for a notify step
 * orchestrator.notify_request first applies the user's quiet hours and
 * max_notifications_per_hour, which defer the step, never drop it, then
 * addresses a chat.postMessage through slack_user_mappings.  An endpoint
 * context source's request is built the same way (orch_context_http_prepare).
 * The request gets an Idempotency-Key made of the job id and the step index
 * (and the source's name, for a context source), the same on every retry
 * of the step and after a crash.  A URL or header with a line break is
 * refused there, before anything is sent (check_single_line).  The request
 * is copied out of the transaction into its own memory context, with the job's bookkeeping (OrchStepRequest) as
 * its owner, since http.c knows nothing of jobs; worker.c hands it to curl
 * after the transaction commits, so no transaction is open while it
 * travels.
 *
 * Reading the response (in the job's next short transaction, under its
 * fencing token): secret values are scrubbed from the body first; a 2xx
 * JSON body is the step's output; 429 defers the job to Retry-After (in
 * seconds or as an HTTP date) or 5 minutes, which is neither a failure nor
 * an attempt; every other outcome (timeout, refused connection, 3xx, 4xx,
 * 5xx, a body that is not JSON or is too large) raises an ERROR that the
 * caller records as the step's failure, for its on_failure to decide.
 *
 * src/step_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "guc.h"
#include "http_text.h"
#include "step_http.h"
#include "step_sql.h"
#include "util.h"

static SPIPlanPtr http_plan_kept = NULL;
static SPIPlanPtr notify_plan = NULL;
static SPIPlanPtr notify_result_plan = NULL;

static char **
copy_text_array(Datum d, bool isnull, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]);
	return out;
}

/* the http_request query, for http steps and endpoint context sources */
static SPIPlanPtr
http_plan(void)
{
	if (http_plan_kept == NULL)
	{
		Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, INT4OID, JSONBOID, BOOLOID};

		http_plan_kept = orch_prepare_kept(
			"SELECT r.defer_until, r.defer_reason, r.url, r.timeout_ms, r.headers, r.body, r.secrets"
			" FROM orchestrator.http_request($1, $2, $3, $4, $5, NULL, $6) r", 6, types);
	}
	return http_plan_kept;
}

/*
 * check_single_line refuses, as the request is built, a URL or header
 * with a carriage return or line feed (a header value may hold secrets,
 * checked when they were set: this is the check at send time, which no
 * edit of the tables can get round).  Neither the value nor the secrets
 * in it are named.
 */
static void
check_single_line(OrchHttpRequest *req, const OrchStepRequest *owner)
{
	if (strpbrk(req->url, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the URL of endpoint \"%s\" contains a line break; the request was not sent",
						owner->endpoint)));
	for (int i = 0; i < req->nheaders; i++)
		if (strpbrk(req->headers[i], "\r\n") != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%.*s\" of endpoint \"%s\" contains a line break; the request was not sent",
							(int) strcspn(req->headers[i], ":\r\n"), req->headers[i], owner->endpoint),
					 errhint("Set the secrets it uses again with orch_set_secret, which refuses line breaks.")));
}

/*
 * build_request runs the prepared request query (plan, args) and copies
 * its one row into a new request owned by the job's step or context
 * source.  Returns NULL with *defer_until and *defer_reason set when a
 * notify step must wait.
 */
static OrchHttpRequest *
build_request(SPIPlanPtr plan, Datum *args, const char *nulls, const OrchStepRequest *owner,
			  TimestampTz *defer_until, const char **defer_reason)
{
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	OrchHttpRequest *req;
	OrchStepRequest *o;
	MemoryContext old;
	Datum		d;

	ret = SPI_execute_plan(plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "orchestrator could not prepare the request: %s", SPI_result_code_string(ret));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*defer_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
	if (!isnull)
	{
		*defer_reason = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		return NULL;
	}
	*defer_until = 0;

	req = orch_http_new_request();
	old = MemoryContextSwitchTo(req->context);
	o = palloc(sizeof(OrchStepRequest));
	*o = *owner;
	o->step_name = pstrdup(owner->step_name);
	o->kind = pstrdup(owner->kind);
	o->endpoint = owner->endpoint ? pstrdup(owner->endpoint) : NULL;
	o->context_name = owner->context_name ? pstrdup(owner->context_name) : NULL;
	req->owner = o;
	req->url = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
	req->timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	d = SPI_getbinval(tup, desc, 5, &isnull);
	req->headers = copy_text_array(d, isnull, &req->nheaders);
	req->body = TextDatumGetCString(SPI_getbinval(tup, desc, 6, &isnull));
	d = SPI_getbinval(tup, desc, 7, &isnull);
	req->secrets = copy_text_array(d, isnull, &req->nsecrets);
	req->idempotency_key = o->context_name
		? psprintf("orch-%s-%d-context-%s", orch_uuid_str(&o->job.id), o->step_index, o->context_name)
		: psprintf("orch-%s-%d", orch_uuid_str(&o->job.id), o->step_index);
	req->prepared_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	check_single_line(req, owner);
	/* built: only now does it outlive this transaction */
	orch_http_keep(req);
	return req;
}

/*
 * prepare builds the request of an http or notify step.  Returns NULL
 * with *defer_until set when a notify step must wait.
 */
static OrchHttpRequest *
prepare(const OrchClaimedJob *job, int step_index, int attempt,
					   Jsonb *step, Jsonb *state, Jsonb *message,
					   TimestampTz *defer_until, const char **defer_reason)
{
	bool		notify = strcmp(orch_jsonb_get_text(step, "kind"), "notify") == 0;
	OrchStepRequest owner = {*job, step_index, attempt, orch_jsonb_get_text(step, "name"),
	notify ? "notify" : "http", orch_jsonb_get_text(step, "endpoint"), 0, NULL};
	int			timeout_ms = orch_jsonb_get_int(step, "timeout_ms", 0);
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	if (notify)
	{
		if (notify_plan == NULL)
		{
			Oid			types[4] = {UUIDOID, JSONBOID, JSONBOID, JSONBOID};

			notify_plan = orch_prepare_kept(
				"SELECT r.defer_until, r.defer_reason, r.url, r.timeout_ms, r.headers, r.body, r.secrets"
				" FROM orchestrator.notify_request($1, $2, $3, $4) r", 4, types);
		}
		args[0] = UUIDPGetDatum(&job->id);
		args[1] = JsonbPGetDatum(step);
		args[2] = JsonbPGetDatum(state);
		args[3] = message ? JsonbPGetDatum(message) : (Datum) 0;
		nulls[3] = message ? ' ' : 'n';
		return build_request(notify_plan, args, nulls, &owner, defer_until, defer_reason);
	}
	args[0] = UUIDPGetDatum(&job->id);
	args[1] = owner.endpoint ? CStringGetTextDatum(owner.endpoint) : (Datum) 0;
	nulls[1] = owner.endpoint ? ' ' : 'n';
	args[2] = CStringGetTextDatum(owner.step_name);
	args[3] = Int32GetDatum(timeout_ms);
	nulls[3] = timeout_ms > 0 ? ' ' : 'n';
	args[4] = JsonbPGetDatum(state);
	args[5] = BoolGetDatum(true);
	return build_request(http_plan(), args, nulls, &owner, defer_until, defer_reason);
}

/*
 * orch_step_http_begin starts an http or notify step: a notify step's
 * message comes from its function, if it names one; then its request is
 * prepared, to be sent once the transaction commits (r->outcome PARKED),
 * or the step is deferred (quiet hours, max_notifications_per_hour).
 */
OrchHttpRequest *
orch_step_http_begin(const OrchClaimedJob *job, Jsonb *step, Jsonb *state, Oid run_as, OrchStepRecord *r)
{
	char	   *function = orch_jsonb_get_text(step, "function");
	Jsonb	   *message = NULL;
	TimestampTz defer_until;
	const char *reason;
	OrchHttpRequest *req;

	if (function != NULL)
		message = orch_step_sql_execute(function, orch_jsonb_get_text(step, "scope"), state, run_as,
										orch_jsonb_get_int(step, "timeout_ms", 0), &r->scope);
	req = prepare(job, r->step_index, r->attempt, step, state, message, &defer_until, &reason);
	if (req != NULL)
	{
		r->outcome = ORCH_STEP_PARKED;
		return req;
	}
	r->outcome = ORCH_STEP_DEFERRED;
	r->run_at = defer_until;
	r->error = psprintf("%s; deferred until %s",
						strcmp(reason, "quiet_hours") == 0 ? "user is in quiet hours" :
						strcmp(reason, "rate_limit") == 0 ? "user reached max_notifications_per_hour" :
						strcmp(reason, "endpoint_rate_limit") == 0 ?
						psprintf("endpoint \"%s\" is at its rate limit (orch_set_rate_limit)",
								 orch_jsonb_get_text(step, "endpoint")) :
						reason,
						timestamptz_to_str(defer_until));
	return NULL;
}

/*
 * orch_step_http_end reads the response of a step's request into r: its
 * output (succeeded), or a deferral on 429.  A failure raises an ERROR.
 */
void
orch_step_http_end(OrchHttpRequest *resume, OrchStepRecord *r)
{
	TimestampTz defer_until;

	r->http_status = resume->status;
	r->output = orch_step_http_result(resume, &defer_until);
	if (r->output != NULL)
	{
		r->outcome = ORCH_STEP_SUCCEEDED;
		return;
	}
	r->outcome = ORCH_STEP_DEFERRED;
	r->run_at = defer_until;
	r->error = psprintf("endpoint \"%s\" answered HTTP 429 (rate limited); deferred until %s",
						orch_step_request(resume)->endpoint, timestamptz_to_str(defer_until));
}

/*
 * orch_context_http_prepare builds the request of an endpoint context
 * source, loaded before step step_index: POSTed the state like an http
 * step named "context:<source>", with an Idempotency-Key of its own.
 */
OrchHttpRequest *
orch_context_http_prepare(const OrchClaimedJob *job, int step_index, const char *source, int tier,
						  const char *endpoint, Jsonb *state)
{
	OrchStepRequest owner = {*job, step_index, 1, psprintf("context:%s", source), "http",
	(char *) endpoint, tier, (char *) source};
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', 'n', ' ', ' '};
	TimestampTz defer_until;
	const char *reason;

	args[0] = UUIDPGetDatum(&job->id);
	args[1] = CStringGetTextDatum(endpoint);
	args[2] = CStringGetTextDatum(owner.step_name);
	args[3] = (Datum) 0;
	args[4] = JsonbPGetDatum(state);
	/* a context load is not held back by the endpoint's rate limit */
	args[5] = BoolGetDatum(false);
	return build_request(http_plan(), args, nulls, &owner, &defer_until, &reason);
}

/*
 * scrub_secrets overwrites every secret value the request carried wherever
 * it appears in what came back (body, Location, Retry-After, curl's error
 * text), so an endpoint that echoes its headers cannot leak one into the
 * job's state or a stored error.
 */
static void
scrub_secrets(OrchHttpRequest *req)
{
	for (int i = 0; i < req->nsecrets; i++)
	{
		orch_scrub_secret(req->resp, req->secrets[i]);
		orch_scrub_secret(req->location, req->secrets[i]);
		orch_scrub_secret(req->retry_after, req->secrets[i]);
		orch_scrub_secret(req->errbuf, req->secrets[i]);
	}
}

/*
 * orch_step_http_result turns a finished request into the step's output.
 * A 429 returns NULL with *defer_until set; a failure raises an ERROR.
 */
Jsonb *
orch_step_http_result(OrchHttpRequest *req, TimestampTz *defer_until)
{
	OrchStepRequest *o = orch_step_request(req);
	Jsonb	   *out;

	*defer_until = 0;
	scrub_secrets(req);

	if (req->result != CURLE_OK)
	{
		if (req->too_large)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("response of endpoint \"%s\" is larger than orchestrator.max_response_bytes (%d bytes)",
							o->endpoint, orch_max_response_bytes)));
		if (req->result == CURLE_OPERATION_TIMEDOUT)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("request to endpoint \"%s\" timed out after %ld ms", o->endpoint, req->timeout_ms)));
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("request to endpoint \"%s\" failed: %s", o->endpoint,
						req->errbuf[0] ? req->errbuf : curl_easy_strerror((CURLcode) req->result))));
	}

	if (req->status == 429)
	{
		/* a message Slack rate-limited was not delivered */
		if (strcmp(o->kind, "notify") == 0)
			orch_step_notify_record(req, false, NULL);
		*defer_until = TimestampTzPlusMilliseconds(req->finished_at,
												   (int64) orch_retry_after_secs(req->retry_after, req->finished_at) * 1000);
		return NULL;
	}
	if (req->status >= 300 && req->status < 400)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("endpoint \"%s\" answered with a redirect (HTTP %ld), which is not followed",
						o->endpoint, req->status),
				 req->location[0] ? errdetail("Location: %s", req->location) : 0));
	if (req->status < 200 || req->status >= 300)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("endpoint \"%s\" answered HTTP %ld", o->endpoint, req->status)));

	if (req->resp == NULL || req->resp_len == 0)
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	/* check the syntax without throwing, to say which endpoint sent garbage */
	if (strlen(req->resp) != req->resp_len ||
		pg_parse_json(makeJsonLexContextCstringLen(req->resp, (int) req->resp_len,
												   GetDatabaseEncoding(), false),
					  &nullSemAction) != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("endpoint \"%s\" returned a body that is not JSON", o->endpoint)));
	out = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(req->resp)));

	/* Slack answers 200 with {"ok": false, "error": ...} when it refuses */
	if (strcmp(o->kind, "notify") == 0)
	{
		char	   *ok = orch_jsonb_get_text(out, "ok");

		if (ok == NULL || strcmp(ok, "true") != 0)
		{
			char	   *why = orch_jsonb_get_text(out, "error");

			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("Slack did not accept the message: %s", why ? why : "no reason given")));
		}
		orch_step_notify_record(req, true, orch_jsonb_get_text(out, "ts"));
	}
	return out;
}

/*
 * orch_step_notify_record marks a notify step's message sent or failed in
 * orchestrator.notification_log.
 */
void
orch_step_notify_record(OrchHttpRequest *req, bool ok, const char *ts)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			ret;

	if (notify_result_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, TEXTOID, BOOLOID, TEXTOID};

		notify_result_plan = orch_prepare_kept(
			"SELECT orchestrator.notify_result($1, $2, $3, $4)", 4, types);
	}
	args[0] = UUIDPGetDatum(&orch_step_request(req)->job.id);
	args[1] = CStringGetTextDatum(orch_step_request(req)->step_name);
	args[2] = BoolGetDatum(ok);
	args[3] = ts ? CStringGetTextDatum(ts) : (Datum) 0;
	nulls[3] = ts ? ' ' : 'n';
	ret = SPI_execute_plan(notify_result_plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orchestrator could not record the notification: %s", SPI_result_code_string(ret));
}
