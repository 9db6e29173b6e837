/*-------------------------------------------------------------------------
 *
 * http_text.c
 *	  Reading and checking the text of HTTP exchanges: a header's value out
 *	  of the raw line curl hands over, a response body growing under its
 *	  cap, Retry-After, and secret values scrubbed from what came back.
 *
 * This is the code that reads what an endpoint sends, so it is kept apart
 * in plain C: nothing here allocates with palloc, raises an error or
 * touches the catalog.  Memory is malloc'ed (like curl's own), failures
 * are return values, and the callers (http.c in curl's callbacks,
 * step_http.c when it reads a response) decide what they mean.  So
 * fuzz/ can link this file alone, against the same headers, and fuzz it
 * without a server (fuzz/README.md).
 *
 * src/http_text.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "http_text.h"

/*
 * orch_http_header_value: when line (len bytes as curl hands it over, not
 * NUL-terminated, CRLF included) is the header name ("retry-after:", any
 * case, colon included), copies its value, trimmed, into dst (dstlen
 * bytes, cut to fit, always NUL-terminated) and returns true.
 */
bool
orch_http_header_value(const char *line, size_t len, const char *name, char *dst, size_t dstlen)
{
	size_t		namelen = strlen(name);
	const char *v = line + namelen;
	const char *end = line + len;
	size_t		n;

	if (len <= namelen || pg_strncasecmp(line, name, namelen) != 0)
		return false;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	n = Min((size_t) (end - v), dstlen - 1);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return true;
}

/*
 * orch_http_body_append appends n bytes of data to the malloc'ed buffer
 * *buf (*len bytes used of *cap), growing it as needed, and keeps it
 * NUL-terminated.  Returns false, leaving the buffer as it was, when
 * memory runs out.  The caller enforces its size cap first.
 */
bool
orch_http_body_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		size_t		newcap = Max(*cap * 2, *len + n + 1);
		char	   *p;

		newcap = Max(newcap, 1024);
		p = realloc(*buf, newcap);
		if (p == NULL)
			return false;
		*buf = p;
		*cap = newcap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

/*
 * orch_retry_after_secs reads a Retry-After value (delay-seconds or an
 * HTTP date) received at now: how many seconds to wait, at most
 * ORCH_MAX_RETRY_AFTER_S; ORCH_DEFAULT_RETRY_AFTER_S for an empty or
 * unreadable value, 0 for a date already past.
 */
long
orch_retry_after_secs(const char *value, TimestampTz now)
{
	long		secs = ORCH_DEFAULT_RETRY_AFTER_S;

	if (value[0] != '\0')
	{
		char	   *end;
		long		n = strtol(value, &end, 10);

		if (end != value && *end == '\0' && n >= 0)
			secs = n;
		else
		{
			time_t		t = curl_getdate(value, NULL);

			/*
			 * Compared in whole seconds since 1970: a date curl reads can be
			 * too far out to be a TimestampTz in microseconds (year 800000
			 * overflowed it; found by fuzz/fuzz_retry_after).  The date is
			 * whole seconds, so the wait, rounded up, is the difference from
			 * now rounded down.
			 */
			if (t != (time_t) -1)
			{
				int64		now_s = now / USECS_PER_SEC + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;

				secs = ((int64) t > now_s) ? (long) Min((int64) t - now_s, ORCH_MAX_RETRY_AFTER_S) : 0;
			}
		}
	}
	return Min(secs, ORCH_MAX_RETRY_AFTER_S);
}

/*
 * orch_scrub_secret overwrites every occurrence of secret in text (a
 * NUL-terminated string, or NULL) with '*', so an endpoint that echoes a
 * header cannot leak the secret into a job's state or a stored error.
 * Each search starts past the last one masked: a secret made of '*' alone
 * still matches what was just masked, and searching from the start again
 * would never end (found by fuzz/fuzz_http_response).
 */
void
orch_scrub_secret(char *text, const char *secret)
{
	size_t		len = strlen(secret);
	char	   *p = text;

	if (text == NULL || len == 0)
		return;
	while ((p = strstr(p, secret)) != NULL)
	{
		memset(p, '*', len);
		p += len;
	}
}
