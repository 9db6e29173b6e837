/*-------------------------------------------------------------------------
 *
 * step_sql.c
 *	  Steps of kind "sql": call a SQL function with the job's state.
 *
 * The step names a function taking the SequenceState as jsonb and
 * returning jsonb (checked when the sequence is defined, resolved again by
 * name here so a dump and restore, which changes OIDs, keeps working).  It
 * runs inside the step's subtransaction (step.c), so whatever it writes
 * commits together with the step's state, or rolls back with it.
 *
 * Privileges: the function never runs as the worker (a superuser).  Its
 * "scope" decides as whom:
 *  - user (the default): as orchestrator.user_role when set (Supabase:
 *    authenticated), else as the sequence's definer, with request.jwt.claims
 *    (and request.jwt.claim.sub) naming the job's user, so RLS policies
 *    written for PostgREST apply to the step as they would to the user;
 *  - service: as the definer, with no user claims: org-wide work such as
 *    the pipeline scan.  Every attempt is recorded with its scope in
 *    step_history (the orchestrator.service_scope_audit view).
 * The role must hold EXECUTE on the function, so defining sequences grants
 * nothing the definer did not already have.  It runs as a
 * security-restricted operation with its own GUC nest level, so it can
 * neither leave settings (a search_path, the claims, synchronous_commit)
 * nor session state (temp tables) behind for the engine's own queries.
 *
 * src/step_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "postmaster/interrupt.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "guc.h"
#include "step_sql.h"
#include "util.h"

/* true while a step's function runs: SIGTERM then cancels it (worker.c) */
volatile sig_atomic_t orch_step_running = false;

/*
 * orch_step_sql_execute calls function fname(state) with the given scope
 * ("user" when NULL) and returns its output; *scope_out, when asked for,
 * says how it ran.  timeout_ms > 0 bounds it like statement_timeout, and
 * SIGTERM cancels it.  Any error raised (missing function, NULL result, the
 * function's own errors, the timeout) propagates to the caller's
 * subtransaction.  Used for sql steps, notify steps' messages and function
 * context sources alike.
 */
Jsonb *
orch_step_sql_execute(const char *fname, const char *scope, Jsonb *state, Oid run_as,
					  int timeout_ms, const char **scope_out)
{
	bool		user_scope = (scope == NULL || strcmp(scope, "user") == 0);
	char	   *claims = NULL;
	char	   *sub = NULL;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Oid			argtype = JSONBOID;
	Oid			fnoid;
	FmgrInfo	flinfo;
	Datum		result;

	LOCAL_FCINFO(fcinfo, 1);

	if (fname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sql step has no function")));

	fnoid = LookupFuncName(stringToQualifiedNameList(fname), 1, &argtype, true);
	if (!OidIsValid(fnoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(jsonb) does not exist", fname),
				 errhint("The function was dropped after the sequence was defined.")));

	/* the function may have been replaced since the sequence was defined */
	{
		HeapTuple	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
		Form_pg_proc proc;
		bool		ok;

		if (!HeapTupleIsValid(proctup))
			elog(ERROR, "cache lookup failed for function %u", fnoid);
		proc = (Form_pg_proc) GETSTRUCT(proctup);
		ok = (proc->prorettype == JSONBOID && !proc->proretset && proc->prokind == PROKIND_FUNCTION);
		ReleaseSysCache(proctup);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("function %s(jsonb) no longer returns a single jsonb value", fname),
					 errhint("A step function must return jsonb; define the sequence again after fixing it.")));
	}

	if (user_scope)
	{
		Jsonb	   *event = orch_jsonb_get(state, "event");
		char	   *org = orch_jsonb_get_text(event, "org_id");
		char	   *role;
		StringInfoData buf;

		if (orch_user_role != NULL && orch_user_role[0] != '\0')
		{
			run_as = get_role_oid(orch_user_role, true);
			if (!OidIsValid(run_as))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("role \"%s\" named by orchestrator.user_role does not exist", orch_user_role),
						 errhint("Create the role, or set orchestrator.user_role to an existing one (or to '' to run user-scoped steps as the sequence's definer).")));
		}

		sub = orch_jsonb_get_text(event, "user_id");
		role = GetUserNameFromId(run_as, false);
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"sub\": ");
		escape_json(&buf, sub ? sub : "");
		appendStringInfoString(&buf, ", \"role\": ");
		escape_json(&buf, role);
		appendStringInfoString(&buf, ", \"org_id\": ");
		escape_json(&buf, org ? org : "");
		appendStringInfoString(&buf, ", \"aud\": \"authenticated\"}");
		claims = buf.data;
	}
	if (scope_out)
		*scope_out = user_scope ? "user" : "service";

	if (pg_proc_aclcheck(fnoid, run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fname),
				 errdetail("It runs as role \"%s\" (scope %s).",
						   GetUserNameFromId(run_as, false), user_scope ? "user" : "service")));

	fmgr_info(fnoid, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(state);
	fcinfo->args[0].isnull = false;

	/*
	 * Run as the definer, in a restricted operation (no temp tables, no
	 * session-level state), and undo any setting the function changes so
	 * nothing it does outlives the step in the worker's session.  An error
	 * restores both along with the subtransaction.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	save_nestlevel = NewGUCNestLevel();
	SetUserIdAndSecContext(run_as, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("request.jwt.claims", claims ? claims : "",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
	(void) set_config_option("request.jwt.claim.sub", sub ? sub : "",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
	if (timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	orch_step_running = true;
	PG_TRY();
	{
		result = FunctionCallInvoke(fcinfo);
	}
	PG_FINALLY();
	{
		/* disarmed however the function ends; an error propagates on */
		orch_step_running = false;
		disable_timeout(STATEMENT_TIMEOUT, false);
	}
	PG_END_TRY();
	/* a SIGTERM or timeout that came as the function ended needs no cancel */
	if (ShutdownRequestPending || get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
	/* as on abort: every setting made inside, SET or SET LOCAL, is undone */
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("function %s returned NULL", fname),
				 errhint("A step function must return a jsonb value; return '{}' for no output.")));

	return DatumGetJsonbP(result);
}
