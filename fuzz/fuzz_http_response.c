/*-------------------------------------------------------------------------
 *
 * fuzz_http_response.c
 *	  libFuzzer target: an endpoint's answer as src/http_text.c reads it,
 *	  in the order the worker does: header lines as curl hands them over,
 *	  the body in pieces, secret values scrubbed, then Retry-After.
 *
 * Input: three parts separated by NUL bytes, SECRETS \0 HEADERS \0 BODY.
 * SECRETS is the secret values the request carried, one per line; HEADERS
 * is the raw header block, split after each '\n' into the lines curl
 * passes to its header callback (each copied into a buffer of exactly its
 * length, not NUL-terminated, as curl gives it, so a read past its end is
 * caught); BODY arrives in pieces of 1 to 97 bytes.  Missing parts are
 * empty.  The request is a real OrchHttpRequest (src/http.h), so the
 * fixed Retry-After and Location buffers have their production sizes.
 *
 * Checked besides memory safety: the header values fit their buffers, the
 * body is kept whole and NUL-terminated, a scrub only turns bytes into '*'
 * and leaves no secret behind, every scrub ends (libFuzzer's -timeout),
 * and the wait read from Retry-After is within its bounds.
 *
 * fuzz/fuzz_http_response.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "http.h"
#include "http_text.h"

#define FUZZ_NOW ((TimestampTz) 788918400 * USECS_PER_SEC)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_http_response: %s\n", what);
	abort();
}

/* part: the next NUL-separated part of [*p, end) */
static const char *
part(const char **p, const char *end, size_t *len)
{
	const char *start = *p;
	const char *nul = memchr(start, '\0', end - start);

	*len = (nul ? nul : end) - start;
	*p = nul ? nul + 1 : end;
	return start;
}

/* what http.c's header callback does with one line */
static void
header_line(OrchHttpRequest *req, const char *line, size_t len)
{
	char	   *copy = malloc(len ? len : 1);

	memcpy(copy, line, len);
	if (!orch_http_header_value(copy, len, "retry-after:", req->retry_after, sizeof(req->retry_after)))
		(void) orch_http_header_value(copy, len, "location:", req->location, sizeof(req->location));
	free(copy);
	if (strlen(req->retry_after) >= sizeof(req->retry_after) || strlen(req->location) >= sizeof(req->location))
		fail("a header value overflowed its buffer");
}

/*
 * scrub_field scrubs one field and checks it: only bytes turned into '*'
 * changed, and a secret with no '*' in it is gone.  (A secret with a '*'
 * can match masked bytes afterwards: that is the mask, not the secret.)
 */
static void
scrub_field(char *field, const char *secret)
{
	char	   *before;

	if (field == NULL)
		return;
	before = strdup(field);
	orch_scrub_secret(field, secret);
	for (size_t i = 0; before[i] != '\0'; i++)
		if (field[i] != before[i] && field[i] != '*')
			fail("the scrub changed a byte into something else than '*'");
	if (secret[0] != '\0' && strchr(secret, '*') == NULL && strstr(field, secret) != NULL)
		fail("a secret survived its scrub");
	free(before);
}

static void
scrub(OrchHttpRequest *req, const char *secret)
{
	scrub_field(req->resp, secret);
	scrub_field(req->location, secret);
	scrub_field(req->retry_after, secret);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *) data;
	const char *end = p + size;
	OrchHttpRequest req;
	size_t		slen,
				hlen,
				blen;
	const char *secrets = part(&p, end, &slen);
	const char *headers = part(&p, end, &hlen);
	const char *body = part(&p, end, &blen);
	char	   *s;
	long		secs;

	memset(&req, 0, sizeof(req));

	for (size_t i = 0; i < hlen;)
	{
		const char *nl = memchr(headers + i, '\n', hlen - i);
		size_t		n = nl ? (size_t) (nl - (headers + i)) + 1 : hlen - i;

		header_line(&req, headers + i, n);
		i += n;
	}

	for (size_t i = 0, k = 0; i < blen; k++)
	{
		size_t		n = Min(blen - i, 1 + (k * 31 + (unsigned char) body[i]) % 97);

		if (!orch_http_body_append(&req.resp, &req.resp_len, &req.resp_cap, body + i, n))
			fail("out of memory");
		i += n;
	}
	if (req.resp_len != blen || (blen > 0 && (memcmp(req.resp, body, blen) != 0 || req.resp[blen] != '\0')))
		fail("the body was not kept whole");

	/* the secrets, one per line, scrubbed in turn */
	s = malloc(slen + 1);
	memcpy(s, secrets, slen);
	s[slen] = '\0';
	for (char *line = s, *next; line != NULL; line = next)
	{
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		scrub(&req, line);
	}
	free(s);

	secs = orch_retry_after_secs(req.retry_after, FUZZ_NOW);
	if (secs < 0 || secs > ORCH_MAX_RETRY_AFTER_S)
		fail("Retry-After gave a wait out of bounds");

	free(req.resp);
	return 0;
}
