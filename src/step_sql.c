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
 * Privileges: the function runs as the role that defined the sequence, not
 * as the worker (a superuser), and that role must hold EXECUTE on it; so
 * defining sequences grants nothing the definer did not already have.
 *
 * src/step_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "utils/jsonb.h"
#include "utils/regproc.h"

#include "orchestrator.h"

/*
 * orch_step_sql_execute calls the step's function and returns its output.
 * Any error raised (missing function, NULL result, the function's own
 * errors) propagates to the caller's subtransaction.
 */
Jsonb *
orch_step_sql_execute(Jsonb *step, Jsonb *state, Oid run_as)
{
	Oid			save_userid;
	int			save_sec_context;
	char	   *fname = orch_jsonb_get_text(step, "function");
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

	if (pg_proc_aclcheck(fnoid, run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fname),
				 errdetail("Steps run as the role that defined the sequence, \"%s\".",
						   GetUserNameFromId(run_as, false))));

	fmgr_info(fnoid, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(state);
	fcinfo->args[0].isnull = false;

	/* an error restores the user along with the subtransaction */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(run_as, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	result = FunctionCallInvoke(fcinfo);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("function %s returned NULL", fname),
				 errhint("A step function must return a jsonb value; return '{}' for no output.")));

	return DatumGetJsonbP(result);
}
