/*-------------------------------------------------------------------------
 *
 * http.h
 *	  libcurl inside the worker's wait: one multi handle, many transfers
 *	  (http.c).  A request here is a URL, headers and a body; it knows
 *	  nothing of jobs, whose bookkeeping its owner keeps behind "owner".
 *
 * src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_HTTP_H
#define ORCH_HTTP_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"

/*
 * One HTTP request, from its preparation, through curl, to the reading of
 * its response.  Lives in its own memory context, under TopMemoryContext
 * once built (orch_http_keep), deleted by orch_http_free.
 */
typedef struct OrchHttpRequest
{
	dlist_node	node;
	MemoryContext context;
	void	   *owner;			/* the caller's, in context; never read here */

	/* the request */
	char	   *url;
	long		timeout_ms;
	char	  **headers;		/* "Name: value", secrets substituted */
	int			nheaders;
	char	   *body;
	char	   *idempotency_key;
	char	  **secrets;		/* values to scrub from whatever comes back */
	int			nsecrets;

	/* the transfer (curl types kept opaque here) */
	void	   *easy;
	void	   *curl_headers;
	TimestampTz prepared_at;
	TimestampTz finished_at;

	/* the response */
	int			result;			/* CURLcode */
	long		status;
	char	   *resp;			/* malloc'ed, NUL-terminated */
	size_t		resp_len;
	size_t		resp_cap;
	bool		too_large;
	char		retry_after[128];
	char		location[512];
	char		errbuf[256];	/* CURL_ERROR_SIZE */
} OrchHttpRequest;

extern void orch_http_init(void);
extern int	orch_http_wait_fd(void);
extern long orch_http_timeout(void);
extern int	orch_http_inflight(void);
extern int	orch_http_room(void);
extern int	orch_http_max_seen_inflight(void);
extern OrchHttpRequest *orch_http_new_request(void);
extern void orch_http_keep(OrchHttpRequest *req);
extern void orch_http_start(OrchHttpRequest *req);
extern void orch_http_drive(void);
extern bool orch_http_has_done(void);
extern OrchHttpRequest *orch_http_take_done(void);
extern void orch_http_free(OrchHttpRequest *req);
extern void orch_http_abort_all(void);

#endif							/* ORCH_HTTP_H */
