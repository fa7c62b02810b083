"""The seed's CustomerServiceAgent on the OpenAI Agents SDK, gated by gatehouse.

    GATEHOUSE_URL=http://127.0.0.1:7878 GATEHOUSE_TOKEN=... OPENAI_API_KEY=... \\
        python customer_service.py "Refund order ORD-1002, the parcel never arrived"

``OPENAI_BASE_URL`` points it at another Chat Completions server; ``OPENAI_MODEL`` names the
model (default ``gpt-4o-mini``).
"""

from __future__ import annotations

import asyncio
import os
import sys

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from gatehouse_approvals import Gatehouse, run_gated

ORDERS = {
    "ORD-1001": {"customer": "cus_17", "amount": 23.50, "status": "delivered"},
    "ORD-1002": {"customer": "cus_42", "amount": 149.99, "status": "lost in transit"},
}


@function_tool
def get_order_details(order_id: str) -> str:
    """Look up an order."""
    order = ORDERS.get(order_id)
    return f"{order_id}: {order}" if order else f"no order {order_id}"


@function_tool(needs_approval=True)
def issue_refund(order_id: str, amount: float, reason: str) -> str:
    """Refund an order (a reviewer approves it in gatehouse)."""
    return f"Refunded ${amount:.2f} for {order_id} ({reason})."


@function_tool(needs_approval=True)
def delete_user_account(customer_id: str) -> str:
    """Delete a customer's account (a reviewer approves it in gatehouse)."""
    return f"Deleted account {customer_id}."


def build_agent() -> Agent:
    client = AsyncOpenAI(base_url=os.environ.get("OPENAI_BASE_URL"))
    model = OpenAIChatCompletionsModel(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), openai_client=client
    )
    return Agent(
        name="CustomerServiceAgent",
        instructions="You help customers with orders. Look orders up before refunding.",
        tools=[get_order_details, issue_refund, delete_user_account],
        model=model,
    )


async def main(prompt: str) -> None:
    set_tracing_disabled(True)
    result = await run_gated(build_agent(), prompt, Gatehouse())
    print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Refund order ORD-1002, it never arrived."))
