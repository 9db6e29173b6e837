/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  Who is calling: PostgREST users and administrators (auth.c).
 *
 * src/auth.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCH_AUTH_H
#define ORCH_AUTH_H

#include "utils/uuid.h"

extern bool orch_caller_user(pg_uuid_t *user_id);
extern bool orch_caller_is_admin(void);
extern void orch_check_acting_for(const pg_uuid_t *user_id, const char *what);

#endif							/* ORCH_AUTH_H */
