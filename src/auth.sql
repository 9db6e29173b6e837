/*-------------------------------------------------------------------------
 *
 * auth.sql
 *	  Who is calling (auth.c): the real caller's role, the PostgREST user, administrators.
 *
 * Part of the install script: make joins the sources in src/ named by
 * src/load_order.txt, in its order, into sql/orchestrator--<version>.sql.
 *
 * src/auth.sql
 *
 *-------------------------------------------------------------------------
 */

CREATE FUNCTION orchestrator.calling_role() RETURNS regrole
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_calling_role';
COMMENT ON FUNCTION orchestrator.calling_role() IS 'The role the session acts as outside any SECURITY DEFINER function (the real caller)';

-- Who is calling: PostgREST users act for themselves only

CREATE FUNCTION orchestrator.caller_user_id() RETURNS uuid
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_caller_user_id';
COMMENT ON FUNCTION orchestrator.caller_user_id() IS 'The user id ("sub") of request.jwt.claims when set (a PostgREST call), else NULL';

CREATE FUNCTION orchestrator.caller_is_admin() RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orch_caller_is_admin_sql';
COMMENT ON FUNCTION orchestrator.caller_is_admin() IS 'True when the calling role is a superuser or a member of orchestrator_admin';
