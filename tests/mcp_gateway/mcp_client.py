"""A real MCP client for tests/mcp_gateway.rs: the official Python SDK's streamable-HTTP client.

Usage: mcp_client.py URL TOKEN (URL may be stdio:["program", "arg", ...]). Reads commands (JSON, one a line) on stdin and writes events
(JSON, one a line) on stdout, so the Rust test can drive it step by step:
  {"op": "list"}                                  -> {"event": "tools", "tools": [...]}
  {"op": "call", "tag": T, "tool": N, "args": {}, "progress": bool, "timeout": seconds?}
                                                  -> {"event": "sent", "tag": T, "request_id": I}
                                                     then {"event": "result", ...} or {"event": "error", ...}
  {"op": "cancel", "tag": T}                      -> sends notifications/cancelled for T's request
  {"op": "exit"}                                  -> closes the session (DELETE) and exits
Server notifications are reported as {"event": "notification", "method": M}; progress as
{"event": "progress", "tag": T, "message": M}.
"""

import json
import os
import sys
from datetime import timedelta

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def emit(**event):
    print(json.dumps(event), flush=True)


async def main(url, token):
    if url.startswith("stdio:"):
        # A stdio server: the command line (a JSON array) after "stdio:", the token in its
        # environment as GATEHOUSE_TOKEN.
        argv = json.loads(url[len("stdio:"):])
        env = dict(os.environ, GATEHOUSE_TOKEN=token)
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        async with stdio_client(params) as (read, write):
            await session_over(read, write)
        return
    headers = {"Authorization": f"Bearer {token}"}
    # Reads may wait for a reviewer: no read timeout.
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            await session_over(read, write)


async def session_over(read, write):
    async def on_message(message):
        if isinstance(message, types.ServerNotification):
            emit(event="notification", method=message.root.method)
        elif isinstance(message, Exception):
            emit(event="transport_error", message=str(message))

    async with ClientSession(read, write, message_handler=on_message) as session:
        init = await session.initialize()
        emit(
            event="initialized",
            protocol=init.protocolVersion,
            server=init.serverInfo.name,
            list_changed=bool(init.capabilities.tools and init.capabilities.tools.listChanged),
        )
        await serve(session)


async def serve(session):
    calls = {}
    stdin = anyio.wrap_file(sys.stdin)
    async with anyio.create_task_group() as tg:
        async for line in stdin:
            command = json.loads(line)
            op = command["op"]
            if op == "list":
                result = await session.list_tools()
                emit(
                    event="tools",
                    tools=[t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in result.tools],
                )
            elif op == "call":
                tag = command["tag"]
                scope = anyio.CancelScope()
                calls[tag] = {"scope": scope}
                tg.start_soon(call, session, command, scope, calls[tag])
            elif op == "cancel":
                entry = calls[command["tag"]]
                await session.send_notification(
                    types.ClientNotification(
                        types.CancelledNotification(
                            params=types.CancelledNotificationParams(
                                requestId=entry["request_id"], reason="the user cancelled"
                            )
                        )
                    )
                )
                entry["scope"].cancel()
                emit(event="cancel_sent", tag=command["tag"])
            elif op == "exit":
                tg.cancel_scope.cancel()
                return


async def call(session, command, scope, entry):
    tag = command["tag"]

    async def progress(value, total, message):
        emit(event="progress", tag=tag, progress=value, message=message)

    with scope:
        # send_request takes the next id before its first await.
        entry["request_id"] = session._request_id
        emit(event="sent", tag=tag, request_id=entry["request_id"])
        try:
            timeout = command.get("timeout")
            result = await session.call_tool(
                command["tool"],
                command.get("args", {}),
                read_timeout_seconds=timedelta(seconds=timeout) if timeout else None,
                progress_callback=progress if command.get("progress") else None,
            )
        except Exception as e:  # noqa: BLE001 - the test reads every failure
            emit(event="error", tag=tag, message=f"{type(e).__name__}: {e}")
            return
        text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
        emit(event="result", tag=tag, isError=bool(result.isError), text=text)


if __name__ == "__main__":
    try:
        anyio.run(main, sys.argv[1], sys.argv[2])
    except BaseException as e:  # noqa: BLE001 - a dropped connection must show, not vanish
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        emit(event="fatal", message=f"{type(e).__name__}: {e}")
        sys.exit(1)
