/*-------------------------------------------------------------------------
 *
 * fuzz_retry_after.c
 *	  libFuzzer target: orch_retry_after_secs (src/http_text.c), the
 *	  reading of a 429 answer's Retry-After header (delay-seconds, or an
 *	  HTTP date through curl_getdate).
 *
 * The input, cut at its first NUL, is the header's value, read at a fixed
 * "now" (2025-01-01 00:00:00.5 UTC).  Checked: the wait is between 0 and
 * ORCH_MAX_RETRY_AFTER_S seconds, and a value of plain digits waits that
 * many seconds (cut to the maximum).  The sanitizers catch overflow in
 * the date arithmetic.
 *
 * fuzz/fuzz_retry_after.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "http_text.h"

/* 2025-01-01 00:00:00.5 UTC, in microseconds since 2000-01-01 */
#define FUZZ_NOW ((TimestampTz) 788918400 * USECS_PER_SEC + 500000)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *value = malloc(size + 1);
	long		secs;
	size_t		digits;

	memcpy(value, data, size);
	value[size] = '\0';
	secs = orch_retry_after_secs(value, FUZZ_NOW);
	if (secs < 0 || secs > ORCH_MAX_RETRY_AFTER_S)
	{
		fprintf(stderr, "fuzz_retry_after: \"%s\" gave %ld seconds\n", value, secs);
		abort();
	}
	digits = strspn(value, "0123456789");
	if (digits > 0 && digits <= 15 && value[digits] == '\0')
	{
		long		want = Min(strtol(value, NULL, 10), ORCH_MAX_RETRY_AFTER_S);

		if (secs != want)
		{
			fprintf(stderr, "fuzz_retry_after: \"%s\" gave %ld seconds, not %ld\n", value, secs, want);
			abort();
		}
	}
	free(value);
	return 0;
}
