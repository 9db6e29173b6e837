/*-------------------------------------------------------------------------
 *
 * http_text.h
 *	  Reading and checking the text of HTTP exchanges in plain C, with no
 *	  backend calls (http_text.c).
 *
 * src/http_text.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_HTTP_TEXT_H
#define ORCH_HTTP_TEXT_H

#include "datatype/timestamp.h"

/* 429 without a usable Retry-After: the seed's five minutes */
#define ORCH_DEFAULT_RETRY_AFTER_S 300
/* a Retry-After further out than this is cut to it */
#define ORCH_MAX_RETRY_AFTER_S (24 * 3600)

extern bool orch_http_header_value(const char *line, size_t len, const char *name,
								   char *dst, size_t dstlen);
extern bool orch_http_body_append(char **buf, size_t *len, size_t *cap,
								  const char *data, size_t n);
extern long orch_retry_after_secs(const char *value, TimestampTz now);
extern void orch_scrub_secret(char *text, const char *secret);

#endif							/* ORCH_HTTP_TEXT_H */
