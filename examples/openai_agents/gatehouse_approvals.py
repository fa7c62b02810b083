"""Resolve an OpenAI Agents SDK run's tool approvals through gatehouse.

A tool defined with ``@function_tool(needs_approval=True)`` pauses the run: ``result.interruptions``
lists the calls waiting for a decision. ``run_gated`` submits each to gatehouse (the agent's
name, the tool call, the run's latest words as reasoning), waits for the reviewer, and answers
the SDK: ``state.approve(item)`` (``always_approve=True`` when the reviewer granted the tool for
the rest of the run, the console's ``A``) or ``state.reject(item, rejection_message=...)`` with
the reviewer's reason. Then the run resumes.

It fails closed: if gatehouse cannot be reached, refuses the request or nobody decides in time,
the call is rejected with the reason, never run. Only the standard library is used for HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from agents import Agent, ItemHelpers, MessageOutputItem, Runner, RunResult

__all__ = ["Gatehouse", "GatehouseError", "run_gated", "resolve_interruptions"]

# Each long poll stays well under the HTTP timeout below.
_POLL_SECONDS = 25


class GatehouseError(Exception):
    """gatehouse could not be asked, or refused the request."""


class Gatehouse:
    """A small client of gatehouse's HTTP API, for an identity with the ``agent`` role."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 570.0,
    ) -> None:
        self.url = (url or os.environ.get("GATEHOUSE_URL") or "").rstrip("/")
        self.token = token or os.environ.get("GATEHOUSE_TOKEN") or ""
        if not self.url:
            raise GatehouseError("no gatehouse URL: pass url= or set GATEHOUSE_URL")
        if not self.token:
            raise GatehouseError("no token: pass token= or set GATEHOUSE_TOKEN")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=_POLL_SECONDS + 10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                payload = json.loads(e.read() or b"{}")
            except ValueError:
                payload = {}
            message = payload.get("error", {}).get("message", str(e))
            raise GatehouseError(f"gatehouse refused the request ({e.code}): {message}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise GatehouseError(f"cannot reach gatehouse at {self.url}: {e}") from e

    def decide(
        self,
        tool: str,
        arguments: dict,
        *,
        agent: str,
        run_id: str,
        reasoning: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit one call and wait until it is decided; returns the approval. On timeout the
        approval is cancelled first, so no reviewer approves a call nobody waits for."""
        body: dict[str, Any] = {
            "tool": tool,
            "arguments": arguments,
            "agent": agent,
            "run_id": run_id,
            "timeout": self.timeout + 5,
            "context": {"host": "openai-agents", "session": run_id},
        }
        if reasoning:
            body["reasoning"] = reasoning
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        _, approval = self._call("POST", "/v1/approvals", body)
        deadline = time.monotonic() + self.timeout
        while approval.get("status") == "pending":
            left = deadline - time.monotonic()
            if left <= 0:
                try:
                    self._call("POST", f"/v1/approvals/{approval['id']}/cancel", {})
                except GatehouseError:
                    pass  # it expires on its own a few seconds later
                raise GatehouseError(
                    f"timed out: no reviewer decided within {self.timeout:.0f}s"
                )
            wait = min(left, _POLL_SECONDS)
            _, approval = self._call("GET", f"/v1/approvals/{approval['id']}?wait={wait:.1f}")
        return approval


def _arguments(raw: Any) -> dict:
    text = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    if not text:
        return {}
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise GatehouseError(f"tool arguments are not an object: {text!r}")
    return value


def _call_id(raw: Any) -> str | None:
    return raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)


def _latest_words(result: RunResult) -> str | None:
    """The model's latest text in this run, the reasoning a reviewer reads."""
    for item in reversed(result.new_items):
        if isinstance(item, MessageOutputItem):
            text = ItemHelpers.text_message_output(item).strip()
            if text:
                return text
    return None


def _reason(approval: dict) -> str:
    status = approval.get("status")
    reason = ((approval.get("decision") or {}).get("reason") or "").strip()
    if status == "denied":
        return f"The reviewer denied this action: {reason}" if reason else "The reviewer denied this action."
    if status == "expired":
        return "The approval timed out before a reviewer decided, so this action was not run."
    return f"The approval ended as {status}, so this action was not run."


async def resolve_interruptions(
    result: RunResult, gatehouse: Gatehouse, *, run_id: str, agent_name: str | None = None
):
    """Decide every interruption of ``result`` through gatehouse; returns the state to resume."""
    state = result.to_state()
    reasoning = _latest_words(result)
    for item in result.interruptions:
        name = item.name or "tool"
        agent = agent_name or item.agent.name
        try:
            arguments = _arguments(item.raw_item)
            call_id = _call_id(item.raw_item)
            approval = await asyncio.to_thread(
                gatehouse.decide,
                name,
                arguments,
                agent=agent,
                run_id=run_id,
                reasoning=reasoning,
                idempotency_key=f"{run_id}:{call_id}" if call_id else None,
            )
        except GatehouseError as e:
            # Fail closed: a call nobody approved does not run.
            state.reject(item, rejection_message=f"Not run: {e}")
            continue
        if approval.get("status") == "approved":
            always = (approval.get("decision") or {}).get("scope") == "run"
            state.approve(item, always_approve=always)
        else:
            state.reject(item, rejection_message=_reason(approval))
    return state


async def run_gated(
    agent: Agent, input: Any, gatehouse: Gatehouse, *, run_id: str | None = None, **kwargs: Any
) -> RunResult:
    """``Runner.run`` with every approval decided in gatehouse."""
    run_id = run_id or f"agents-{uuid.uuid4()}"
    result = await Runner.run(agent, input, **kwargs)
    while result.interruptions:
        state = await resolve_interruptions(result, gatehouse, run_id=run_id)
        result = await Runner.run(agent, state, **kwargs)
    return result
