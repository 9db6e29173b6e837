#!/usr/bin/env python3
"""standin.py - a stand-in for the outside world, for orchestrator's tests and demo.

The engine's background workers call "edge functions" (Supabase style,
POST /functions/v1/<name>) and Slack (POST /api/chat.postMessage) over HTTP.
Tests and the demo point the engine at this server on loopback instead.  It
answers like those services, can be told per path to misbehave, and records
every request so tests can assert on what the engine actually sent.

Python 3.11 standard library only.

CLI
===
    python3 test/standin.py [--port P] [--bind 127.0.0.1] [--port-file FILE] [--lean]

    --port P          TCP port; 0 (the default) lets the kernel pick a free one.
    --bind ADDR       address to listen on (default 127.0.0.1).
    --port-file FILE  after binding, write the port number (digits and a
                      newline) to FILE.tmp and rename it to FILE, so a reader
                      never sees a partial file.  The file is left in place on
                      exit.
    --lean            record less of each request, for long soak runs: of the
                      headers only Idempotency-Key, and of a JSON object body
                      only its "sequence_job_id" and "step" (a body that is not
                      an object is recorded as null).  Everything else about a
                      request (seq, path, times, status, client) is recorded as
                      usual.  Answers are the same as without it.

After binding (the socket already accepts connections at that point) it
prints exactly "listening on <port>" to stdout and flushes.  It exits with
status 0 on SIGTERM or SIGINT (in-flight requests are abandoned), and with
status 1 and a message on stderr if it cannot bind.  Nothing is logged per request; only
unexpected server-side exceptions are printed to stderr.

Every response carries a correct Content-Length and is JSON unless stated
otherwise.  HTTP/1.1 keep-alive is honoured, so connection reuse by a client
shows up as the same "client" ip:port on several recorded requests.

Default routes (every path not under /_control)
===============================================
Each such request is recorded (see GET /_control/requests) and counted in the
stats, whatever happens to it.  Behaviours are matched on the path without its
query string.

POST /functions/v1/<name>
    Body must be JSON, otherwise 400 {"error": "invalid_json"} (an empty body
    counts as not JSON).  The engine sends {"sequence_job_id", "step", "event",
    "context", "outputs"} with event = {type, source, org_id, user_id, payload,
    parent_job_id}.  Answers 200 application/json:

    extract-action-items
        {"action_items": [{"item": text, "owner": "rep"|"prospect"}, ...]}
        Built from event.payload.action_items when that is a non-empty list.
        A string element becomes an item owned by "rep", unless it starts with
        "prospect:" or "rep:" (the prefix is stripped and sets the owner).  An
        object element takes its text from "item", "text" or "description" and
        its owner from "owner" ("prospect" if it says so, else "rep").
        Otherwise two canned items (one rep, one prospect).
    detect-intents
        {"commitments": [...], "signals": [...]}
        One commitment per outputs["extract-action-items"].action_items item:
        text mentioning "proposal" (any case) gives
          {"speaker": "rep", "intent": "send_proposal", "confidence": 0.92,
           "phrase": text}
        anything else gives
          {"speaker": owner, "intent": "follow_up", "confidence": 0.6,
           "phrase": text}
        With no such input, one canned send_proposal commitment (rep, 0.92).
        "signals" is always one canned buying signal.
    suggest-next-actions
        {"next_actions": [{"action", "title", "priority", "based_on"}, ...]}
        One per outputs["detect-intents"].commitments entry (at most 5),
        "based_on" being that commitment's phrase; with none, two canned
        actions with "based_on": null.
    generate-proposal
        {"proposal_id": "prop_<first 12 hex of sha256(request body)>",
         "title": "Proposal for <event.payload.company | deal_name | 'the prospect'>",
         "sections": [{"heading", "body"}, ...]}
        The id is a function of the exact request bytes, so a re-sent request
        gives the same id.
    The capabilities the seed's other sequences call (examples/sequences/).
    "tier-2 contact" (or company) below is the "contact" (or "company") object
    of the first source under context.tier2, by name, that has one:
    email-classifier
        {"intent", "urgency", "confidence": 0.9} from event.payload.subject and
        .snippet: intent "no_reply_needed" if they mention "unsubscribe" or
        "out of office", else "reply_needed"; urgency "high" if they mention
        "urgent", "asap" or "today", else "normal".
    copywriter
        A draft {"to", "subject", "body"}.  "to": event.payload.from, else the
        tier-2 contact.email, else "prospect@example.com".  With
        event.payload.subject: subject "Re: <subject>" and a short reply
        addressed to the first word of event.payload.from_name (else of the
        tier-2 contact.full_name, else "there").  Else, with
        outputs["generate-proposal"].title: that title as subject and a cover
        note quoting event.payload.trigger_phrase and the proposal_id.  Else
        "Following up".
    email-send-as-rep
        Sends the one draft among the values of "outputs" (an object whose
        "to", "subject" and "body" are strings): {"sent": true, "message_id":
        "msg_<first 12 hex of sha256 of the JSON [to, subject, body]>", "to",
        "subject", "body"} (what it sent, echoed).  No such draft, or more
        than one: 400 {"error": "no_single_draft"}.
    find-available-slots
        {"duration_minutes", "timezone": "UTC", "slots": [{"start", "end"}, x3]}:
        10:00 and 14:00 on event.payload.window_start (YYYY-MM-DD; default
        2026-12-01) and 09:30 the day after, each event.payload.duration_minutes
        long (5-480, default 30), as "YYYY-MM-DDTHH:MM:SSZ".
    monitor-campaigns
        {"campaigns": [...], "new_replies": total}: one entry per object in
        outputs["active-campaigns"].campaigns (else event.payload.campaigns),
        the i-th (from 0) {"id", "name", "sent": 200+100i, "opened": 45% of
        sent, "replied": 6+4i, "bounced": 2+i, "new_replies": 3+i,
        "reply_rate": replied/sent rounded to 3 places}.
    coaching-analysis
        Canned: {"cost_usd": 0.01, "period_days": 7, "meetings_analysed": 4,
        "talk_ratio": 0.46, "questions_per_meeting": 11, "highlights": [1],
        "suggestions": [2]}.
    proactive-meeting-prep
        With a list outputs["calendar"].meetings (the morning brief):
        "meetings": [{"meeting_id": its id, "status"}], status "not_needed"
        for meeting_type "internal", "ready" for "discovery" or "demo",
        "in_progress" otherwise.  With event.payload.meeting_id (pre-meeting):
        "briefing": {"meeting_id", "contact" (tier-2 contact.full_name),
        "company" and "company_facts" (from context.tier3.apollo_enrichment),
        "talking_points"}.  Either, both, or {}.
    proactive-pipeline-analysis
        Deal health from outputs["pipeline-snapshot"].deals (the org's open
        deals, each {"name", "user_id", "stage", "amount_usd",
        "days_inactive" (integer), "contact_name", "company"}), for the deals
        whose user_id is event.user_id: {"deals_needing_action": how many
        have days_inactive >= 5, "at_risk": [{"deal_name", "days_inactive"}]
        for days_inactive >= 10, most inactive first, "proposal_value_usd":
        sum of amount_usd of stage "proposal", "proposals_awaiting": their
        number, "attention": [{"contact_name", "company", "summary": "Proposal
        sent, no reply for N days", "primary_action": "Send nudge",
        "secondary_action": "Call"}] for those proposals inactive >= 5 days},
        plus "org": {"open_deals", "open_value_usd"} over all the deals.
    apollo-enrichment
        {"source": "apollo", "person": {"name" (tier-2 contact.full_name),
        "seniority"}, "company": {"name" (event.payload.company, else the
        tier-2 company.name), "employees": 1200, "industry", "funding"}}.
    proposal-templates
        Canned: {"default": "tpl_saas_annual", "templates": [two, each
        {"id", "name", "sections"}]}.
    any other <name>
        {"ok": true, "function": name, "received": sorted top-level keys of
         the body ([] if the body is JSON but not an object)}
    A method other than POST gets 405 {"error": "method_not_allowed"}.

POST /api/chat.postMessage  (Slack Web API shape; always HTTP 200)
    Checked in this order:
      no "Authorization: Bearer <non-empty token>" -> {"ok": false, "error": "not_authed"}
      body not JSON (or not an object)              -> {"ok": false, "error": "invalid_json"}
      no "channel"                                  -> {"ok": false, "error": "channel_not_found"}
      neither "text" nor "blocks"                   -> {"ok": false, "error": "no_text"}
      success -> {"ok": true, "channel": channel, "ts": "<epoch secs>.<6-digit seq>",
                  "message": {"text": text or null, "blocks": blocks or null}}
    The body is parsed as JSON whatever its Content-Type; a body that is not
    JSON but is labelled application/x-www-form-urlencoded is parsed as a form
    (its "blocks" field then being a JSON string).  A method other than POST gets
    405 {"error": "method_not_allowed"}.

GET or POST /static  (any method, in fact)
    200 {"ok": true}, precomputed, for throughput comparisons with wrk.
    Still recorded like every other request.

Anything else
    404 {"error": "not_found"}.

Request headers, Authorization in particular, are never echoed in any
response body of these routes.  (They are, of course, visible through
GET /_control/requests; that is what it is for.)

Control API (JSON in and out; never recorded, never counted)
============================================================
POST /_control/behave
    Body: {"path": "/functions/v1/x", "mode": M, ...options}
    Sets the behaviour for that exact path (without query string), replacing
    any earlier one for the path.  Replies {"ok": true}; a bad request gets
    400 {"error": "<reason>"}.
    Options for every mode:
      times     apply to the next N requests to the path (N >= 1), then revert
                to the default; absent = until /_control/reset or replaced.
      delay_ms  sleep this long (after reading the request body) before
                acting; for "close" it delays the close.  Ignored by "hang".
      headers   object of extra response headers, added to whatever is sent.
      every     N >= 1: apply the behaviour to every N-th request to the path
                only (the N-th, 2N-th, ... since the behaviour was set); the
                others get the path's default behaviour.  With "times", only
                the requests it applies to use up a use.  A deterministic
                "fail a share of the requests": every 5 = 20 %.
    Modes:
      ok        the default behaviour of the path (useful with delay_ms).
      status    respond with "status" (required, 100-599) and
                {"error": "injected"}.
      429       status 429, body {"error": "rate_limited"}, and header
                "Retry-After: <retry_after>" when "retry_after" is given
                (a string such as "2" or an HTTP date; numbers are stringified).
      garbage   200, Content-Type application/json, body that is not JSON
                ("<html>oops, this is not JSON</html>").
      oversize  200 with a valid JSON body {"blob": "xxx..."} of exactly
                "size" bytes (default 2 MiB = 2097152; minimum 12).
      redirect  "status" (default 302) with "Location: <location>"
                ("location" required) and body {}.
      json      "status" (default 200) with the "body" value (required; may be
                null) as the JSON body.
      hang      read the request and never answer: wait until the client
                closes its end, or 10 minutes, then drop the connection.
      close     close the connection without sending anything.
    With "times", each request that arrives while uses remain consumes one use
    at the moment its headers have been read.
    Example: {"path": "/functions/v1/x", "mode": "status", "status": 500,
    "every": 7} answers 500 to the 7th, 14th, ... request and normally to
    the others.

GET /_control/behave
    Current behaviours: {"<path>": {mode, options..., "remaining": N|null}}.

POST /_control/reset
    Clears all behaviours, recorded requests and stats (the request seq
    starts again from 1).  Replies {"ok": true}.

GET /_control/requests[?path=/functions/v1/x][&since=N][&format=tsv]
    JSON list of recorded requests in arrival order (optionally only those
    for that exact path, and/or only those with seq > N).  With format=tsv,
    the same requests as text/tab-separated-values instead, one a line, in
    PostgreSQL's COPY text format (NULL as \\N; tabs, newlines and
    backslashes in values replaced by spaces and "/"), with the columns
      seq, path, status, started, finished, idempotency-key header,
      body.sequence_job_id, body.step
    (the last two NULL unless the body is a JSON object with them as
    strings), so a test can load thousands of requests into a table with
    COPY ... FROM PROGRAM 'curl ...'.  Each record:
      {"seq": int (from 1),
       "method": "POST",
       "path": path without query string,
       "query": raw query string ("" if none),
       "headers": {lower-cased name: value}  (repeated headers joined by ", "),
       "body": parsed JSON, or the raw text if not JSON, or null if empty,
       "started": epoch float (request headers read),
       "finished": epoch float, or null while still in flight (set just
                   before the response is written, so it is always set once
                   the client has the response),
       "status": int sent, or null (nothing sent: hang, close, client gone,
                 or a write that failed),
       "client": "ip:port" of the client's end of the connection}

GET /_control/stats
    {"requests": number recorded,
     "in_flight": requests being handled now,
     "max_in_flight": most requests handled at the same moment (a request is
                      in flight from when its headers have been read until
                      its response has been written or it is given up),
     "connections": number of distinct client ip:port seen}
    A request leaves in_flight just after its response has been written, so a
    client that has just read its response may still see it counted for a
    moment; poll rather than assert on in_flight right away.

Any other /_control path gets 404 {"error": "not_found"}.

Example
=======
    python3 test/standin.py --port-file /tmp/standin.port &
    P=$(cat /tmp/standin.port)
    curl -s -XPOST localhost:$P/_control/behave \\
         -d '{"path": "/functions/v1/detect-intents", "mode": "429", "retry_after": "2", "times": 1}'
    curl -s localhost:$P/_control/requests?path=/functions/v1/detect-intents
"""

import argparse
import datetime
import hashlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HANG_MAX_SECONDS = 600          # "hang" mode gives up after 10 minutes
DEFAULT_OVERSIZE = 2 * 1024 * 1024
LEAN = False                    # --lean: record less of each request
GARBAGE_BODY = b"<html>oops, this is not JSON</html>\n"
STATIC_BODY = b'{"ok": true}'
MODES = ("ok", "status", "429", "garbage", "oversize", "redirect", "json",
         "hang", "close")


def dumps(value):
    """Serialise a value to compact UTF-8 JSON bytes."""
    return json.dumps(value, separators=(", ", ": ")).encode("utf-8")


# ---------------------------------------------------------------------------
# Shared state: behaviours, recorded requests, stats.  All access goes
# through the methods below, which hold the lock only briefly; nothing ever
# sleeps or does I/O while holding it.
# ---------------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.behaviours = {}    # path -> dict(mode, options, remaining)
        self.records = []       # recorded requests, in arrival order
        self.next_seq = 1
        self.in_flight = 0
        self.max_in_flight = 0
        self.clients = set()    # distinct "ip:port" seen
        self.slack_seq = 0      # for Slack "ts"; never reset, so ts stay unique

    def reset(self):
        with self.lock:
            self.behaviours.clear()
            self.records = []
            self.next_seq = 1
            self.in_flight = 0
            self.max_in_flight = 0
            self.clients = set()

    def begin(self, method, path, query, headers, client):
        """Record a request whose headers have just been read; count it in flight."""
        rec = {
            "seq": None,
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": None,
            "started": time.time(),
            "finished": None,
            "status": None,
            "client": client,
        }
        with self.lock:
            rec["seq"] = self.next_seq
            self.next_seq += 1
            self.records.append(rec)
            self.clients.add(client)
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
        return rec

    def answered(self, rec, status):
        """Set a record's status and finish time.

        Called just *before* the response bytes are written, so a client that
        has read its response always finds its record complete; called again
        with status None if the write then fails.
        """
        with self.lock:
            rec["status"] = status
            rec["finished"] = time.time()

    def end(self, rec):
        """The request has been answered (or given up): no longer in flight."""
        with self.lock:
            if rec["finished"] is None:      # hang, close, client gone
                rec["finished"] = time.time()
            # After a /_control/reset the counter restarted; never go negative.
            if self.in_flight > 0:
                self.in_flight -= 1

    def set_body(self, rec, body):
        with self.lock:
            rec["body"] = body

    def set_behaviour(self, path, behaviour):
        with self.lock:
            self.behaviours[path] = behaviour

    def take_behaviour(self, path):
        """Return the behaviour for path (or None), consuming one use of 'times'."""
        with self.lock:
            beh = self.behaviours.get(path)
            if beh is None:
                return None
            every = beh["options"].get("every")
            if every is not None:
                beh["seen"] = beh.get("seen", 0) + 1
                if beh["seen"] % every != 0:
                    return None
            if beh["remaining"] is not None:
                beh["remaining"] -= 1
                if beh["remaining"] <= 0:
                    del self.behaviours[path]
            return beh

    def snapshot_behaviours(self):
        with self.lock:
            return {p: dict(b["options"], mode=b["mode"], remaining=b["remaining"])
                    for p, b in self.behaviours.items()}

    def snapshot_records(self, path=None, since=0):
        with self.lock:
            return [dict(r) for r in self.records
                    if (path is None or r["path"] == path) and r["seq"] > since]

    def stats(self):
        with self.lock:
            return {"requests": len(self.records),
                    "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight,
                    "connections": len(self.clients)}

    def next_slack_ts(self):
        with self.lock:
            self.slack_seq += 1
            return "%d.%06d" % (int(time.time()), self.slack_seq % 1000000)


STATE = State()


# ---------------------------------------------------------------------------
# Canned "edge function" answers.  They are deterministic functions of the
# request, and tolerate any malformed input by falling back to canned data.
# ---------------------------------------------------------------------------

def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return value if isinstance(value, list) else []


def fn_extract_action_items(req):
    payload = _dict(_dict(req.get("event")).get("payload"))
    items = []
    for raw in _list(payload.get("action_items")):
        if isinstance(raw, str):
            text, owner = raw, "rep"
            low = raw.lower()
            for prefix in ("prospect:", "rep:"):
                if low.startswith(prefix):
                    owner, text = prefix[:-1], raw[len(prefix):].strip()
        elif isinstance(raw, dict):
            text = raw.get("item") or raw.get("text") or raw.get("description")
            owner = "prospect" if raw.get("owner") == "prospect" else "rep"
        else:
            continue
        if isinstance(text, str) and text:
            items.append({"item": text, "owner": owner})
    if not items:
        items = [{"item": "Send the proposal with updated pricing by Friday",
                  "owner": "rep"},
                 {"item": "Share the security questionnaire with IT",
                  "owner": "prospect"}]
    return {"action_items": items}


def fn_detect_intents(req):
    prev = _dict(_dict(req.get("outputs")).get("extract-action-items"))
    commitments = []
    for it in _list(prev.get("action_items")):
        if not isinstance(it, dict) or not isinstance(it.get("item"), str):
            continue
        text = it["item"]
        if "proposal" in text.lower():
            commitments.append({"speaker": "rep", "intent": "send_proposal",
                                "confidence": 0.92, "phrase": text})
        else:
            owner = it.get("owner") if it.get("owner") in ("rep", "prospect") else "rep"
            commitments.append({"speaker": owner, "intent": "follow_up",
                                "confidence": 0.6, "phrase": text})
    if not commitments:
        commitments = [{"speaker": "rep", "intent": "send_proposal",
                        "confidence": 0.92,
                        "phrase": "I'll send you a proposal by Friday"}]
    signals = [{"type": "buying_signal", "confidence": 0.7,
                "phrase": "We have budget approved for this quarter"}]
    return {"commitments": commitments, "signals": signals}


def fn_suggest_next_actions(req):
    prev = _dict(_dict(req.get("outputs")).get("detect-intents"))
    actions = []
    for c in _list(prev.get("commitments"))[:5]:
        if not isinstance(c, dict):
            continue
        phrase = c.get("phrase") if isinstance(c.get("phrase"), str) else ""
        if c.get("intent") == "send_proposal":
            actions.append({"action": "draft_proposal",
                            "title": "Draft and send the proposal",
                            "priority": "high", "based_on": phrase})
        else:
            actions.append({"action": "follow_up",
                            "title": "Follow up: " + phrase if phrase else "Follow up",
                            "priority": "medium", "based_on": phrase})
    if not actions:
        actions = [{"action": "send_recap_email",
                    "title": "Send a meeting recap email",
                    "priority": "medium", "based_on": None},
                   {"action": "schedule_follow_up",
                    "title": "Schedule a follow-up call next week",
                    "priority": "low", "based_on": None}]
    return {"next_actions": actions}


def fn_generate_proposal(req, raw_body):
    payload = _dict(_dict(req.get("event")).get("payload"))
    who = payload.get("company") or payload.get("deal_name") or "the prospect"
    if not isinstance(who, str):
        who = "the prospect"
    return {"proposal_id": "prop_" + hashlib.sha256(raw_body).hexdigest()[:12],
            "title": "Proposal for " + who,
            "sections": [
                {"heading": "Summary",
                 "body": "What we heard and what we propose for " + who + "."},
                {"heading": "Scope", "body": "Deliverables and timeline."},
                {"heading": "Pricing", "body": "Annual subscription, 20 seats."},
            ]}


# -- the other capabilities the seed's sequences call (examples/sequences) --

def _text(value):
    return value if isinstance(value, str) else ""


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _tier2(req, key):
    """The object at KEY of the first tier-2 context source (by name) that has one."""
    tier2 = _dict(_dict(req.get("context")).get("tier2"))
    for name in sorted(tier2):
        found = _dict(_dict(tier2[name]).get(key))
        if found:
            return found
    return {}


def fn_email_classifier(req):
    payload = _dict(_dict(req.get("event")).get("payload"))
    text = (_text(payload.get("subject")) + " " + _text(payload.get("snippet"))).lower()
    if "unsubscribe" in text or "out of office" in text:
        intent = "no_reply_needed"
    else:
        intent = "reply_needed"
    urgency = "high" if any(w in text for w in ("urgent", "asap", "today")) else "normal"
    return {"intent": intent, "urgency": urgency, "confidence": 0.9}


def fn_copywriter(req):
    payload = _dict(_dict(req.get("event")).get("payload"))
    outputs = _dict(req.get("outputs"))
    contact = _tier2(req, "contact")
    to = _text(payload.get("from")) or _text(contact.get("email")) or "prospect@example.com"
    name = _text(payload.get("from_name")) or _text(contact.get("full_name")) or "there"
    first = (name.split() or ["there"])[0]
    proposal = _dict(outputs.get("generate-proposal"))
    if payload.get("subject"):
        subject = "Re: " + _text(payload["subject"])
        body = ("Hi %s,\n\nThanks for your note. Happy to help: I will come back "
                "to you on this shortly.\n\nBest regards" % first)
    elif proposal.get("title"):
        subject = _text(proposal["title"])
        body = ("Hi %s,\n\nAs promised (\"%s\"), here is our proposal, reference %s.\n\n"
                "Best regards" % (first, _text(payload.get("trigger_phrase")),
                                  _text(proposal.get("proposal_id"))))
    else:
        subject = "Following up"
        body = "Hi %s,\n\nFollowing up on our conversation.\n\nBest regards" % first
    return {"to": to, "subject": subject, "body": body}


def fn_email_send_as_rep(req):
    drafts = [v for v in _dict(req.get("outputs")).values()
              if isinstance(v, dict) and all(isinstance(v.get(k), str)
                                             for k in ("to", "subject", "body"))]
    if len(drafts) != 1:
        return None
    d = drafts[0]
    digest = hashlib.sha256(dumps([d["to"], d["subject"], d["body"]])).hexdigest()[:12]
    return {"sent": True, "message_id": "msg_" + digest,
            "to": d["to"], "subject": d["subject"], "body": d["body"]}


def fn_find_available_slots(req):
    payload = _dict(_dict(req.get("event")).get("payload"))
    day = _text(payload.get("window_start"))
    try:
        first = datetime.date.fromisoformat(day)
    except ValueError:
        first = datetime.date(2026, 12, 1)
    minutes = payload.get("duration_minutes")
    if not _is_int(minutes) or not 5 <= minutes <= 480:
        minutes = 30
    starts = [datetime.datetime.combine(first, datetime.time(10, 0)),
              datetime.datetime.combine(first, datetime.time(14, 0)),
              datetime.datetime.combine(first + datetime.timedelta(days=1),
                                        datetime.time(9, 30))]
    return {"duration_minutes": minutes, "timezone": "UTC",
            "slots": [{"start": s.isoformat() + "Z",
                       "end": (s + datetime.timedelta(minutes=minutes)).isoformat() + "Z"}
                      for s in starts]}


def fn_monitor_campaigns(req):
    listed = _dict(_dict(req.get("outputs")).get("active-campaigns")).get("campaigns")
    if not isinstance(listed, list):
        listed = _dict(_dict(req.get("event")).get("payload")).get("campaigns")
    campaigns = []
    for i, c in enumerate(c for c in _list(listed) if isinstance(c, dict)):
        sent, replied = 200 + 100 * i, 6 + 4 * i
        campaigns.append({"id": c.get("id"), "name": _text(c.get("name")),
                          "sent": sent, "opened": sent * 45 // 100, "replied": replied,
                          "bounced": 2 + i, "new_replies": 3 + i,
                          "reply_rate": round(replied / sent, 3)})
    return {"campaigns": campaigns,
            "new_replies": sum(c["new_replies"] for c in campaigns)}


def fn_coaching_analysis(req):
    return {"cost_usd": 0.01, "period_days": 7, "meetings_analysed": 4,
            "talk_ratio": 0.46, "questions_per_meeting": 11,
            "highlights": ["Clear next steps agreed in 3 of 4 meetings"],
            "suggestions": ["Let the prospect speak first after the demo",
                            "Confirm budget owner before sending a proposal"]}


def fn_proactive_meeting_prep(req):
    outputs = _dict(req.get("outputs"))
    payload = _dict(_dict(req.get("event")).get("payload"))
    out = {}
    listed = _dict(outputs.get("calendar")).get("meetings")
    if isinstance(listed, list):
        statuses = []
        for m in listed:
            m = _dict(m)
            kind = m.get("meeting_type")
            if kind == "internal":
                status = "not_needed"
            elif kind in ("discovery", "demo"):
                status = "ready"
            else:
                status = "in_progress"
            statuses.append({"meeting_id": m.get("id"), "status": status})
        out["meetings"] = statuses
    if payload.get("meeting_id"):
        contact = _tier2(req, "contact")
        enrichment = _dict(_dict(_dict(req.get("context")).get("tier3")).get("apollo_enrichment"))
        company = _dict(enrichment.get("company"))
        out["briefing"] = {
            "meeting_id": payload["meeting_id"],
            "contact": _text(contact.get("full_name")) or "the prospect",
            "company": _text(company.get("name")) or "their company",
            "company_facts": ["%s employees" % company["employees"]]
                             if _is_int(company.get("employees")) else [],
            "talking_points": ["Recap what changed since the last call",
                               "Confirm the decision process and timeline"]}
    return out


def fn_proactive_pipeline_analysis(req):
    event = _dict(req.get("event"))
    deals = [d for d in _list(_dict(_dict(req.get("outputs")).get("pipeline-snapshot")).get("deals"))
             if isinstance(d, dict) and _is_int(d.get("days_inactive"))]
    mine = [d for d in deals if d.get("user_id") == event.get("user_id")]
    proposals = [d for d in mine if d.get("stage") == "proposal"]
    at_risk = sorted((d for d in mine if d["days_inactive"] >= 10),
                     key=lambda d: (-d["days_inactive"], _text(d.get("name"))))
    return {"deals_needing_action": sum(1 for d in mine if d["days_inactive"] >= 5),
            "at_risk": [{"deal_name": _text(d.get("name")), "days_inactive": d["days_inactive"]}
                        for d in at_risk],
            "proposal_value_usd": sum(_number(d.get("amount_usd")) for d in proposals),
            "proposals_awaiting": len(proposals),
            "attention": [{"contact_name": _text(d.get("contact_name")) or None,
                           "company": _text(d.get("company")) or None,
                           "summary": "Proposal sent, no reply for %d days" % d["days_inactive"],
                           "primary_action": "Send nudge", "secondary_action": "Call"}
                          for d in proposals if d["days_inactive"] >= 5],
            "org": {"open_deals": len(deals),
                    "open_value_usd": sum(_number(d.get("amount_usd")) for d in deals)}}


def fn_apollo_enrichment(req):
    contact = _tier2(req, "contact")
    payload = _dict(_dict(req.get("event")).get("payload"))
    company = _text(payload.get("company")) or _text(_tier2(req, "company").get("name"))
    return {"source": "apollo",
            "person": {"name": _text(contact.get("full_name")) or None,
                       "seniority": "director"},
            "company": {"name": company or None, "employees": 1200,
                        "industry": "Software", "funding": "Series C"}}


def fn_proposal_templates(req):
    return {"default": "tpl_saas_annual",
            "templates": [{"id": "tpl_saas_annual", "name": "SaaS annual subscription",
                           "sections": ["Summary", "Scope", "Pricing"]},
                          {"id": "tpl_pilot", "name": "90-day pilot",
                           "sections": ["Goals", "Success criteria", "Pricing"]}]}


FUNCTIONS = {
    "email-classifier": fn_email_classifier,
    "copywriter": fn_copywriter,
    "email-send-as-rep": fn_email_send_as_rep,
    "find-available-slots": fn_find_available_slots,
    "monitor-campaigns": fn_monitor_campaigns,
    "coaching-analysis": fn_coaching_analysis,
    "proactive-meeting-prep": fn_proactive_meeting_prep,
    "proactive-pipeline-analysis": fn_proactive_pipeline_analysis,
    "apollo-enrichment": fn_apollo_enrichment,
    "proposal-templates": fn_proposal_templates,
}


# ---------------------------------------------------------------------------
# The request handler.
# ---------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive by default
    disable_nagle_algorithm = True    # TCP_NODELAY on every accepted connection
    def version_string(self):        # the "Server:" header
        return "standin/1"

    def log_message(self, format, *args):   # quiet: no per-request logging
        pass

    # All methods share one entry point.
    def do_GET(self):
        self._entry()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self):
        self._entry(head=True)

    # -- plumbing -----------------------------------------------------------

    def _read_body(self):
        """Read the request body (Content-Length or chunked); return bytes."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed mid-body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, up to the empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return b""
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionError("client closed mid-body")
        return data

    def _send(self, status, body=b"", ctype="application/json", headers=None):
        """Write a complete response; return the status (or None if the client is gone)."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(str(k), str(v))
            # Headers and body leave in one write: two small writes per
            # response would meet Nagle + delayed ACK and cost ~40 ms each.
            # (_headers_buffer is where send_header() collects the header
            # lines; end_headers() is this append plus flush_headers().)
            self._headers_buffer.append(b"\r\n")
            if body and not self._head:
                self._headers_buffer.append(body)
            if self._rec is not None:
                STATE.answered(self._rec, status)
            self.flush_headers()
            return status
        except OSError:         # includes BrokenPipeError, ConnectionResetError
            self.close_connection = True
            if self._rec is not None:
                STATE.answered(self._rec, None)
            return None

    def _send_json(self, status, value, headers=None):
        return self._send(status, dumps(value), headers=headers)

    def _drop(self):
        """Close the connection without a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _hang(self):
        """Never answer: wait until the client closes its end or HANG_MAX_SECONDS."""
        deadline = time.monotonic() + HANG_MAX_SECONDS
        sock = self.connection
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([sock], [], [], min(left, 1.0))
                if readable:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        break            # client closed its end
                    time.sleep(min(left, 0.2))   # pipelined data: keep ignoring it
            except OSError:
                break
        self._drop()

    # -- dispatch -----------------------------------------------------------

    def _entry(self, head=False):
        self._head = head
        self._rec = None        # the record of this request, if it is recorded
        parts = urlsplit(self.path)
        path, query = parts.path, parts.query
        if path == "/_control" or path.startswith("/_control/"):
            body = self._read_body()
            self._control(path, query, body)
            return

        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        client = "%s:%s" % (self.client_address[0], self.client_address[1])
        if LEAN:
            headers = {k: v for k, v in headers.items() if k == "idempotency-key"}
        rec = self._rec = STATE.begin(self.command, path, query, headers, client)
        try:
            try:
                raw = self._read_body()
            except (ConnectionError, OSError, ValueError):
                # Client went away mid-body, or a bad Content-Length/chunk size.
                self.close_connection = True
                return
            parsed = None
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = raw.decode("utf-8", "replace")
            if LEAN:
                parsed = ({k: parsed[k] for k in ("sequence_job_id", "step") if k in parsed}
                          if isinstance(parsed, dict) else None)
            STATE.set_body(rec, parsed)
            self._respond(path, raw, STATE.take_behaviour(path))
        finally:
            STATE.end(rec)

    def _respond(self, path, raw, beh):
        """Answer one recorded request, applying a behaviour if set; return status sent."""
        if beh is None:
            return self._default(path, raw)
        opts = beh["options"]
        mode = beh["mode"]
        extra = dict(opts.get("headers") or {})
        if mode == "hang":
            self._hang()
            return None
        delay = opts.get("delay_ms") or 0
        if delay > 0:
            time.sleep(delay / 1000.0)       # outside any lock
        if mode == "ok":
            return self._default(path, raw, extra)
        if mode == "status":
            return self._send_json(opts["status"], {"error": "injected"}, extra)
        if mode == "429":
            if opts.get("retry_after") is not None:
                extra["Retry-After"] = str(opts["retry_after"])
            return self._send_json(429, {"error": "rate_limited"}, extra)
        if mode == "garbage":
            return self._send(200, GARBAGE_BODY, headers=extra)
        if mode == "oversize":
            size = opts.get("size", DEFAULT_OVERSIZE)
            body = b'{"blob": "' + b"x" * (size - 12) + b'"}'
            return self._send(200, body, headers=extra)
        if mode == "redirect":
            extra["Location"] = opts["location"]
            return self._send_json(opts.get("status", 302), {}, extra)
        if mode == "json":
            return self._send_json(opts.get("status", 200), opts["body"], extra)
        if mode == "close":
            self._drop()
            return None
        raise AssertionError("unknown mode " + mode)   # validated in /behave

    def _default(self, path, raw, extra=None):
        """The default behaviour of a non-control path; return status sent."""
        if path == "/static":
            return self._send(200, STATIC_BODY, headers=extra)

        if path.startswith("/functions/v1/") and len(path) > len("/functions/v1/"):
            if self.command != "POST":
                return self._send_json(405, {"error": "method_not_allowed"}, extra)
            name = path[len("/functions/v1/"):]
            try:
                req = json.loads(raw) if raw else None
            except ValueError:
                req = None
            if req is None and raw.strip() != b"null":
                return self._send_json(400, {"error": "invalid_json"}, extra)
            obj = _dict(req)
            if name == "extract-action-items":
                out = fn_extract_action_items(obj)
            elif name == "detect-intents":
                out = fn_detect_intents(obj)
            elif name == "suggest-next-actions":
                out = fn_suggest_next_actions(obj)
            elif name == "generate-proposal":
                out = fn_generate_proposal(obj, raw)
            elif name in FUNCTIONS:
                out = FUNCTIONS[name](obj)
                if out is None:
                    return self._send_json(400, {"error": "no_single_draft"}, extra)
            else:
                out = {"ok": True, "function": name, "received": sorted(obj)}
            return self._send_json(200, out, extra)

        if path == "/api/chat.postMessage":
            if self.command != "POST":
                return self._send_json(405, {"error": "method_not_allowed"}, extra)
            return self._send_json(200, self._slack(raw), extra)

        return self._send_json(404, {"error": "not_found"}, extra)

    def _slack(self, raw):
        """chat.postMessage: return the Slack-shaped JSON answer (HTTP 200 always)."""
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return {"ok": False, "error": "not_authed"}
        # JSON first, whatever the Content-Type says (curl -d and libcurl's
        # POSTFIELDS label JSON as form data unless told otherwise); a body that
        # is not JSON but is labelled form-encoded is then parsed as a form.
        ctype = (self.headers.get("Content-Type") or "").lower()
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
            if ctype.startswith("application/x-www-form-urlencoded"):
                try:
                    msg = {k: v[0] for k, v in parse_qs(
                        raw.decode("utf-8"), keep_blank_values=True).items()}
                    if "blocks" in msg:
                        msg["blocks"] = json.loads(msg["blocks"])
                except ValueError:      # includes UnicodeDecodeError
                    msg = None
        if not isinstance(msg, dict):
            return {"ok": False, "error": "invalid_json"}
        if not msg.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not msg.get("text") and not msg.get("blocks"):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "channel": msg["channel"], "ts": STATE.next_slack_ts(),
                "message": {"text": msg.get("text"), "blocks": msg.get("blocks")}}

    # -- control API --------------------------------------------------------

    def _control(self, path, query, raw):
        q = parse_qs(query)
        if path == "/_control/behave" and self.command == "POST":
            try:
                spec = json.loads(raw)
            except ValueError:
                return self._send_json(400, {"error": "invalid_json"})
            err, beh = validate_behaviour(spec)
            if err:
                return self._send_json(400, {"error": err})
            STATE.set_behaviour(spec["path"], beh)
            return self._send_json(200, {"ok": True})
        if path == "/_control/behave" and self.command == "GET":
            return self._send_json(200, STATE.snapshot_behaviours())
        if path == "/_control/reset" and self.command == "POST":
            STATE.reset()
            return self._send_json(200, {"ok": True})
        if path == "/_control/requests" and self.command == "GET":
            try:
                since = int(q.get("since", ["0"])[0])
            except ValueError:
                return self._send_json(400, {"error": "bad_since"})
            recs = STATE.snapshot_records(q.get("path", [None])[0], since)
            if q.get("format", [None])[0] == "tsv":
                return self._send(200, records_tsv(recs), ctype="text/tab-separated-values")
            return self._send_json(200, recs)
        if path == "/_control/stats" and self.command == "GET":
            return self._send_json(200, STATE.stats())
        return self._send_json(404, {"error": "not_found"})


def _tsv_value(v):
    if v is None:
        return "\\N"
    return (str(v).replace("\\", "/").replace("\t", " ")
            .replace("\n", " ").replace("\r", " "))


def records_tsv(recs):
    """Recorded requests as COPY text format lines (see GET /_control/requests)."""
    lines = []
    for r in recs:
        body = r["body"] if isinstance(r["body"], dict) else {}
        job, step = body.get("sequence_job_id"), body.get("step")
        lines.append("\t".join(_tsv_value(v) for v in (
            r["seq"], r["path"], r["status"],
            "%.6f" % r["started"],
            None if r["finished"] is None else "%.6f" % r["finished"],
            r["headers"].get("idempotency-key"),
            job if isinstance(job, str) else None,
            step if isinstance(step, str) else None)) + "\n")
    return "".join(lines).encode("utf-8")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate_behaviour(spec):
    """Check a /_control/behave body; return (error or None, behaviour dict)."""
    if not isinstance(spec, dict):
        return "body_not_object", None
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("/_control"):
        return "bad_path", None
    mode = spec.get("mode")
    if mode == 429:
        mode = "429"
    if mode not in MODES:
        return "bad_mode", None
    opts = {k: v for k, v in spec.items() if k not in ("path", "mode", "times")}
    times = spec.get("times")
    if times is not None and (not _is_int(times) or times < 1):
        return "bad_times", None
    every = opts.get("every")
    if every is not None and (not _is_int(every) or every < 1):
        return "bad_every", None
    delay = opts.get("delay_ms")
    if delay is not None and (not isinstance(delay, (int, float))
                              or isinstance(delay, bool) or delay < 0):
        return "bad_delay_ms", None
    if opts.get("headers") is not None and not isinstance(opts["headers"], dict):
        return "bad_headers", None
    status = opts.get("status")
    if status is not None and (not _is_int(status) or not 100 <= status <= 599):
        return "bad_status", None
    if mode == "status" and status is None:
        return "status_required", None
    if mode == "redirect" and not isinstance(opts.get("location"), str):
        return "location_required", None
    if mode == "json" and "body" not in opts:
        return "body_required", None
    if mode == "oversize":
        size = opts.get("size", DEFAULT_OVERSIZE)
        if not _is_int(size) or size < 12:
            return "bad_size", None
    return None, {"mode": mode, "options": opts, "remaining": times}


class Server(ThreadingHTTPServer):
    daemon_threads = True        # a hung handler never keeps the process alive
    block_on_close = False
    request_queue_size = 1024    # listen backlog: hundreds of concurrent connects
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that vanished is normal here; anything else is a bug worth seeing.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="HTTP stand-in for edge functions and Slack")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port-file")
    ap.add_argument("--lean", action="store_true")
    args = ap.parse_args()
    global LEAN
    LEAN = args.lean

    try:
        server = Server((args.bind, args.port), Handler)
    except OSError as e:
        print("standin: cannot listen on %s:%d: %s" % (args.bind, args.port, e),
              file=sys.stderr)
        return 1
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("listening on %d" % port, flush=True)

    # shutdown() waits for serve_forever() to return, so it must run on another
    # thread than the one serving (the signal handler runs on the main thread).
    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
