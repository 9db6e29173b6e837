/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  Who is calling, and whom they may act for.
 *
 * The calling role is the session's role outside any SECURITY DEFINER
 * function (GetOuterUserId): the role a sequence's steps run as, and the
 * role whose membership in orchestrator_admin makes it an administrator.
 *
 * A call made through PostgREST carries the JWT's claims in the setting
 * request.jwt.claims.  When those claims name a user ("sub"), a caller who
 * is not an administrator acts only for that user: orch_submit_event and
 * orch_resolve_approval refuse anything else.  Without claims nothing is
 * assumed: SQL callers are governed by their grants, so a role that may
 * set request.jwt.claims itself in a SQL session (orchestrator_submitter)
 * is trusted to act for any user, as a webhook ingester is.  Step code is
 * never an administrator, whatever the worker's own role.
 *
 * src/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "auth.h"
#include "util.h"

PG_FUNCTION_INFO_V1(orch_calling_role);
PG_FUNCTION_INFO_V1(orch_caller_user_id);
PG_FUNCTION_INFO_V1(orch_caller_is_admin_sql);

/* 8-4-4-4-12 hex digits, the form JWT "sub" claims carry user ids in */
static bool
looks_like_uuid(const char *s)
{
	int			i;

	for (i = 0; s[i] != '\0'; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return i == 36;
}

/*
 * orch_caller_user reads "sub" of request.jwt.claims.  Returns false when
 * no claims are set or they name no user.
 */
bool
orch_caller_user(pg_uuid_t *user_id)
{
	const char *claims = GetConfigOption("request.jwt.claims", true, false);
	Jsonb	   *j;
	char	   *sub;
	Datum		d;

	if (claims == NULL || claims[0] == '\0')
		return false;
	j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims)));
	if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		return false;
	sub = orch_jsonb_get_text(j, "sub");
	if (sub == NULL || sub[0] == '\0')
		return false;
	if (!looks_like_uuid(sub))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("request.jwt.claims names user \"%s\", which is not a uuid", sub),
				 errhint("The JWT's \"sub\" claim must be the user's id.")));
	d = DirectFunctionCall1(uuid_in, CStringGetDatum(sub));
	memcpy(user_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	return true;
}

/*
 * orch_caller_is_admin: a superuser, or a member of orchestrator_admin.
 * Code running inside a step (a security-restricted operation in a worker,
 * whose outer role is the worker's superuser) is never an administrator:
 * it acts for the job's user, whose claims are set.
 */
bool
orch_caller_is_admin(void)
{
	Oid			caller = GetOuterUserId();
	Oid			admin;

	if (InSecurityRestrictedOperation())
		return false;

	if (superuser_arg(caller))
		return true;
	admin = get_role_oid("orchestrator_admin", true);
	return OidIsValid(admin) && has_privs_of_role(caller, admin);
}

/*
 * orch_check_acting_for refuses a PostgREST caller who is not an
 * administrator acting for a user other than the one its claims name.
 */
void
orch_check_acting_for(const pg_uuid_t *user_id, const char *what)
{
	pg_uuid_t	caller;

	if (!orch_caller_user(&caller))
		return;
	if (memcmp(&caller, user_id, sizeof(pg_uuid_t)) == 0 || orch_caller_is_admin())
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s for another user is not allowed", what),
			 errdetail("request.jwt.claims names user %s; the call is for user %s.",
					   orch_uuid_str(&caller), orch_uuid_str(user_id)),
			 errhint("Act for your own user, or call as a member of orchestrator_admin.")));
}

/*
 * orchestrator.calling_role(): the role the session acts as outside any
 * SECURITY DEFINER function, i.e. who really called.  Recorded as the role
 * a sequence's steps run as.  Inside a step the session is the worker's
 * (a superuser) while the step runs as its definer: there the outer role is
 * not the caller, so defining sequences from a step is refused outright.
 */
Datum
orch_calling_role(PG_FUNCTION_ARGS)
{
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot define a sequence inside a security-restricted operation"),
				 errdetail("Steps run with their definer's rights inside the worker's session, where the caller's role cannot be recorded."),
				 errhint("Define sequences from an ordinary session.")));
	PG_RETURN_OID(GetOuterUserId());
}

/* orchestrator.caller_user_id() */
Datum
orch_caller_user_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user_id = palloc(sizeof(pg_uuid_t));

	if (!orch_caller_user(user_id))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(user_id);
}

/* orchestrator.caller_is_admin() */
Datum
orch_caller_is_admin_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(orch_caller_is_admin());
}
