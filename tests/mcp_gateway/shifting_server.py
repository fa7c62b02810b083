"""A real MCP server (the official Python SDK's FastMCP, over stdio) whose tool list changes:
`add_tool` adds a tool and sends `notifications/tools/list_changed`, so tests/mcp_gateway.rs
can see gatehouse pass the notification on to its own clients."""

from mcp.server.fastmcp import Context, FastMCP

app = FastMCP("shifting")


@app.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool called NAME that answers "extra"."""

    def extra() -> str:
        return "extra"

    app.add_tool(extra, name=name, description="added at run time")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


if __name__ == "__main__":
    app.run()
