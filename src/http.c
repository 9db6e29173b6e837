/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl inside the worker's wait: one multi handle, many transfers.
 *
 * Owns libcurl and nothing else: the multi handle, every easy handle, the
 * epoll set curl's sockets live in, and the list of transfers in flight and
 * done.  It knows nothing of jobs or SQL; step_http.c builds requests and
 * reads responses, worker.c decides when to start them and waits.
 *
 * Integration with the latch (pg_net's shape, without its private sleep):
 * curl's socket callback adds, changes and removes its sockets in an epoll
 * set of ours, and its timer callback records a deadline.  The worker's
 * WaitEventSet watches the latch, postmaster death and that one epoll fd,
 * and uses the deadline as its timeout, so a transfer's progress, a new
 * job and a signal all wake the same wait.  curl is only ever driven from
 * the loop (never from its own callbacks), outside any transaction.
 *
 * Memory: curl allocates with malloc; response bodies are malloc'ed too and
 * capped at orchestrator.max_response_bytes in the write callback, so no
 * palloc can throw from inside curl (the reading of headers and the body's
 * growth are in http_text.c, which the fuzzer tests).  A request's own strings live in its
 * memory context, deleted by orch_http_free.  Connections are kept in the
 * multi handle's cache and reused (keep-alive).  Redirects are never
 * followed, and only http and https are allowed.
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "http.h"
#include "http_text.h"
#include "shmem.h"

static CURLM *multi = NULL;
static int	epfd = -1;
static TimestampTz timer_deadline = 0;	/* 0: no curl timer pending */
static dlist_head inflight = DLIST_STATIC_INIT(inflight);
static dlist_head done = DLIST_STATIC_INIT(done);
static int	n_inflight = 0;
static int	max_seen_inflight = 0;
static int	fd_budget = INT_MAX;	/* sockets the open-file limit leaves us */

static int	socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
static int	timer_cb(CURLM *m, long timeout_ms, void *userp);
static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp);
static size_t header_cb(char *data, size_t size, size_t nitems, void *userp);
static void collect_done(void);

/*
 * orch_http_init sets up libcurl in the worker (never in the postmaster).
 */
void
orch_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialise libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set for HTTP transfers: %m")));

	/*
	 * Every request in flight holds a socket.  Raise the soft open-file
	 * limit to the hard one, and keep what PostgreSQL's own file cache may
	 * use (max_files_per_process) plus a margin out of the sockets' share,
	 * so a burst of requests never fails on EMFILE.
	 */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		{
			if (rl.rlim_cur < rl.rlim_max)
			{
				rl.rlim_cur = Min(rl.rlim_max, (rlim_t) 1048576);
				(void) setrlimit(RLIMIT_NOFILE, &rl);
				(void) getrlimit(RLIMIT_NOFILE, &rl);
			}
			if (rl.rlim_cur != RLIM_INFINITY)
				fd_budget = Max(1, (int) Min(rl.rlim_cur - (rlim_t) max_files_per_process - 64, (rlim_t) INT_MAX));
		}
		if (fd_budget < orch_max_inflight)
			ereport(LOG,
					(errmsg("orchestrator worker keeps at most %d HTTP requests in flight, fewer than orchestrator.max_inflight (%d)",
							fd_budget, orch_max_inflight),
					 errdetail("Each request needs a socket, and the process may open only so many files."),
					 errhint("Raise the open-file limit of the server (ulimit -n) to allow more.")));
	}

	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) orch_max_inflight);
}

/* The fd the worker's WaitEventSet watches for transfer progress. */
int
orch_http_wait_fd(void)
{
	return epfd;
}

int
orch_http_inflight(void)
{
	return n_inflight;
}

/* How many more requests may start now: orchestrator.max_inflight and fds. */
int
orch_http_room(void)
{
	return Max(0, Min(orch_max_inflight, fd_budget) - n_inflight);
}

int
orch_http_max_seen_inflight(void)
{
	return max_seen_inflight;
}

/*
 * orch_http_timeout returns how long the loop may wait before curl needs
 * driving (-1: no timer), so the wait never overshoots a transfer timeout.
 */
long
orch_http_timeout(void)
{
	TimestampTz now;

	if (timer_deadline == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (timer_deadline <= now)
		return 0;
	return (long) ((timer_deadline - now + 999) / 1000);
}

/*
 * socket_cb keeps our epoll set in step with what curl wants to hear about.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		/* the socket may be closed already: nothing to undo then */
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (socketp == NULL)
	{
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
			(void) epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(multi, s, (void *) 1);
	}
	else if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		(void) epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_deadline = 0;
	else
		timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	OrchHttpRequest *req = (OrchHttpRequest *) userp;
	size_t		n = size * nmemb;

	if (req->resp_len + n > (size_t) orch_max_response_bytes)
	{
		req->too_large = true;
		return 0;				/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (!orch_http_body_append(&req->resp, &req->resp_len, &req->resp_cap, data, n))
		return 0;
	return n;
}

/* header_cb keeps the two response headers the engine reads */
static size_t
header_cb(char *data, size_t size, size_t nitems, void *userp)
{
	OrchHttpRequest *req = (OrchHttpRequest *) userp;
	size_t		n = size * nitems;

	if (!orch_http_header_value(data, n, "retry-after:", req->retry_after, sizeof(req->retry_after)))
		(void) orch_http_header_value(data, n, "location:", req->location, sizeof(req->location));
	return n;
}

/*
 * orch_http_start hands a prepared request to curl.  On failure to even
 * start, the request completes at once with curl's error.
 */
void
orch_http_start(OrchHttpRequest *req)
{
	CURL	   *easy = curl_easy_init();
	struct curl_slist *h = NULL;
	CURLMcode	mc;

	req->easy = easy;
	if (easy == NULL)
	{
		req->result = CURLE_OUT_OF_MEMORY;
		dlist_push_tail(&done, &req->node);
		return;
	}

	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	h = curl_slist_append(h, psprintf("Idempotency-Key: %s", req->idempotency_key));
	for (int i = 0; i < req->nheaders; i++)
		h = curl_slist_append(h, req->headers[i]);
	req->curl_headers = h;

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(req->body));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Min(req->timeout_ms, 10000L));
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "orchestrator/0.1");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);

	mc = curl_multi_add_handle(multi, easy);
	if (mc != CURLM_OK)
	{
		snprintf(req->errbuf, sizeof(req->errbuf), "%s", curl_multi_strerror(mc));
		req->result = CURLE_FAILED_INIT;
		dlist_push_tail(&done, &req->node);
		return;
	}
	dlist_push_tail(&inflight, &req->node);
	n_inflight++;
	max_seen_inflight = Max(max_seen_inflight, n_inflight);
	orch_shmem_report_inflight(n_inflight);
}

/*
 * orch_http_drive lets curl act on every ready socket and on its timer.
 * Called from the loop after each wait, never from a curl callback.
 */
void
orch_http_drive(void)
{
	struct epoll_event evs[64];
	int			running;
	int			n;

	if (multi == NULL)
		return;

	for (;;)
	{
		n = epoll_wait(epfd, evs, lengthof(evs), 0);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & EPOLLERR)
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
		}
		if (n < (int) lengthof(evs))
			break;
	}

	if (timer_deadline != 0 && timer_deadline <= GetCurrentTimestamp())
	{
		timer_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_done();
}

/* collect_done moves finished transfers from in flight to done. */
static void
collect_done(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		OrchHttpRequest *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->result = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &req->status);
		req->finished_at = GetCurrentTimestamp();
		curl_multi_remove_handle(multi, msg->easy_handle);
		dlist_delete(&req->node);
		n_inflight--;
		orch_shmem_report_inflight(n_inflight);
		dlist_push_tail(&done, &req->node);
	}
}

/*
 * orch_http_take_done returns the next finished request, or NULL.
 */
OrchHttpRequest *
orch_http_take_done(void)
{
	if (dlist_is_empty(&done))
		return NULL;
	return dlist_container(OrchHttpRequest, node, dlist_pop_head_node(&done));
}

bool
orch_http_has_done(void)
{
	return !dlist_is_empty(&done);
}

/*
 * orch_http_free releases a finished request: curl's handle and lists,
 * the malloc'ed body, and the request's memory context.
 */
void
orch_http_free(OrchHttpRequest *req)
{
	if (req->easy)
		curl_easy_cleanup(req->easy);
	if (req->curl_headers)
		curl_slist_free_all(req->curl_headers);
	if (req->resp)
		free(req->resp);
	MemoryContextDelete(req->context);
}

/*
 * orch_http_abort_all drops every transfer, in flight or done (SIGTERM).
 * Their jobs keep their leases, which the caller hands back.
 */
void
orch_http_abort_all(void)
{
	OrchHttpRequest *req;

	if (multi == NULL)
		return;
	while (!dlist_is_empty(&inflight))
	{
		req = dlist_container(OrchHttpRequest, node, dlist_pop_head_node(&inflight));
		curl_multi_remove_handle(multi, req->easy);
		orch_http_free(req);
	}
	n_inflight = 0;
	orch_shmem_report_inflight(0);
	while ((req = orch_http_take_done()) != NULL)
		orch_http_free(req);
}

/*
 * orch_http_new_request makes an empty request in its own memory context,
 * a child of the current one, so an error while it is built frees it;
 * orch_http_keep then makes it outlive the transaction that built it.
 */
OrchHttpRequest *
orch_http_new_request(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "orchestrator HTTP request",
											  ALLOCSET_SMALL_SIZES);
	OrchHttpRequest *req = MemoryContextAllocZero(cxt, sizeof(OrchHttpRequest));

	req->context = cxt;
	return req;
}

/*
 * orch_http_keep moves a request built by orch_http_new_request under
 * TopMemoryContext, where it lives until orch_http_free.
 */
void
orch_http_keep(OrchHttpRequest *req)
{
	MemoryContextSetParent(req->context, TopMemoryContext);
}
