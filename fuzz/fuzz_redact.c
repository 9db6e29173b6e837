/*-------------------------------------------------------------------------
 *
 * fuzz_redact.c
 *	  libFuzzer target: orch_redact (src/redact.c), the masking of emails
 *	  and tokens in stored errors and in everything a worker logs.
 *
 * Each input, cut at its first NUL (orch_redact takes a C string), is
 * masked as it is; AddressSanitizer and UndefinedBehaviorSanitizer catch
 * any read past the string or undefined arithmetic in the scanners.  Then
 * an oracle: the input is placed on both sides of a known credential and
 * a known email address, each set off by spaces,
 *
 *     INPUT " Bearer Zq9Zq9Zq9 ada.lovelace@example.com " INPUT
 *
 * and whatever the input holds, the masked text must hold fewer copies of
 * each than went in (the planted ones are always masked; copies inside the
 * input may or may not be, as the input decides).
 *
 * fuzz/fuzz_redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "redact.h"

#define CREDENTIAL "Zq9Zq9Zq9"
#define EMAIL "ada.lovelace@example.com"
#define EMAIL_PART "lovelace@example"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* occurrences of needle in hay, overlapping ones included */
static size_t
occurrences(const char *hay, const char *needle)
{
	size_t		n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
expect_masked(const char *in, const char *out, const char *needle)
{
	size_t		before = occurrences(in, needle);
	size_t		after = occurrences(out, needle);

	if (after >= before)
	{
		fprintf(stderr, "fuzz_redact: \"%s\" not masked: %zu copies in, %zu out\n"
				"input:  %s\noutput: %s\n", needle, before, after, in, out);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	char	   *planted;
	char	   *out;
	size_t		len;

	memcpy(text, data, size);
	text[size] = '\0';
	len = strlen(text);

	out = orch_redact(text);
	pfree(out);

	planted = malloc(2 * len + 64);
	sprintf(planted, "%s Bearer " CREDENTIAL " " EMAIL " %s", text, text);
	out = orch_redact(planted);
	expect_masked(planted, out, CREDENTIAL);
	expect_masked(planted, out, EMAIL_PART);
	pfree(out);

	free(planted);
	free(text);
	return 0;
}
