/*-------------------------------------------------------------------------
 *
 * redact.h
 *	  Masking emails and tokens in stored errors and the server log (redact.c).
 *
 * src/redact.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_REDACT_H
#define ORCH_REDACT_H

extern char *orch_redact(const char *text);
extern void orch_redact_log_init(void);

#endif							/* ORCH_REDACT_H */
