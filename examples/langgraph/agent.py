"""A LangGraph agent that holds no provider token and works through Airlock.

The graph is  agent -> tools -> (await_review) -> agent ... -> END.
Its tools call the GitHub and Stripe APIs with plain `requests`; Airlock injects the real
credentials. When Airlock holds an irreversible call (HTTP 423, nothing sent upstream), the
`await_review` node asks the human with LangGraph's `interrupt()`: the run pauses, its state is
kept in a SQLite checkpoint, and the process may exit. A later `resume` reads the decision from
Airlock's agent endpoint (https://airlock.local/v1/reviews/{id}?wait=N). The answer given to
`interrupt()` only says "check now"; approving is done by a reviewer in Airlock, never by the
agent.

Environment (no provider token anywhere):
  HTTPS_PROXY=http://AGENT:alk_...@127.0.0.1:8080   # from `airlock agents add AGENT`
  REQUESTS_CA_BUNDLE=/path/to/airlock-ca.pem         # `airlock ca export`

  python3 agent.py --scripted run --repo octo/scratch   # reads, then tries to delete; pauses
  python3 agent.py --scripted resume                    # after a reviewer decided in Airlock

Every event is printed as one JSON line on stdout.
"""

import argparse
import json
import os
import sys

import requests
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

GITHUB = "https://api.github.com"
STRIPE = "https://api.stripe.com"
AIRLOCK = "https://airlock.local"  # answered by Airlock itself, through the proxy
FINAL_STATES = {"executed", "failed", "rejected", "expired", "outcome_unknown"}

# HTTPS_PROXY and REQUESTS_CA_BUNDLE come from the environment; no Authorization header is set.
http = requests.Session()
http.headers["Accept"] = "application/json"


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def answer(r: requests.Response) -> dict:
    """A tool result: upstream status and (short) body, or Airlock's hold answer."""
    if r.status_code == 423 and r.headers.get("Airlock-Outcome") == "ESCALATE":
        held = r.json()
        return {"held": True, "reviewId": held["reviewId"], "airlockTool": held.get("tool"),
                "expiresAt": held.get("expiresAt"), "reasonCodes": held.get("reasonCodes")}
    return {"status": r.status_code, "airlockOutcome": r.headers.get("Airlock-Outcome"),
            "body": r.text[:2000]}


# --- tools: plain HTTP calls, no credentials -------------------------------------------------

@tool
def github_get_repo(owner: str, repo: str) -> dict:
    """Read a GitHub repository."""
    return answer(http.get(f"{GITHUB}/repos/{owner}/{repo}", timeout=30))


@tool
def github_delete_repo(owner: str, repo: str) -> dict:
    """Delete a GitHub repository (irreversible: Airlock holds it for a human)."""
    return answer(http.delete(f"{GITHUB}/repos/{owner}/{repo}", timeout=30))


@tool
def stripe_get_charge(charge_id: str) -> dict:
    """Read a Stripe charge."""
    return answer(http.get(f"{STRIPE}/v1/charges/{charge_id}", timeout=30))


@tool
def stripe_refund(charge_id: str, amount: int | None = None) -> dict:
    """Refund a Stripe charge, fully or `amount` in the smallest currency unit (held by Airlock)."""
    form = {"charge": charge_id, **({"amount": str(amount)} if amount is not None else {})}
    return answer(http.post(f"{STRIPE}/v1/refunds", data=form, timeout=30))


TOOLS = {t.name: t for t in (github_get_repo, github_delete_repo, stripe_get_charge, stripe_refund)}


# --- models: a deterministic script for tests and demos, or any LangChain chat model ----------

class ScriptedModel:
    """Replays a fixed list of tool calls, one per turn, then summarises the last tool result."""

    def __init__(self, calls: list[tuple[str, dict]]):
        self.calls = calls

    def invoke(self, messages: list) -> AIMessage:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        if turn < len(self.calls):
            name, args = self.calls[turn]
            return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{turn}"}])
        return AIMessage(f"Done. Last result: {messages[-1].content}")


def scripted(script: str, repo: str, charge: str) -> ScriptedModel:
    owner, name = repo.split("/", 1)
    if script == "stripe":
        return ScriptedModel([("stripe_get_charge", {"charge_id": charge}),
                              ("stripe_refund", {"charge_id": charge})])
    return ScriptedModel([("github_get_repo", {"owner": owner, "repo": name}),
                          ("github_delete_repo", {"owner": owner, "repo": name})])


def chat_model(spec: str):
    """A real LLM, e.g. "openai:gpt-4o-mini" (needs `pip install langchain langchain-openai`)."""
    from langchain.chat_models import init_chat_model  # optional, not in requirements.txt

    return init_chat_model(spec).bind_tools(list(TOOLS.values()))


# --- the graph ---------------------------------------------------------------------------------

class State(MessagesState):
    pending: list[dict]  # tool calls Airlock holds, oldest first


def build(model, checkpointer):
    def agent(state: State):
        return {"messages": [model.invoke(state["messages"])]}

    def tools(state: State):
        results, pending = [], list(state.get("pending") or [])
        for call in state["messages"][-1].tool_calls:
            try:
                out = TOOLS[call["name"]].invoke(call["args"])
            except (KeyError, ValueError, requests.RequestException) as e:
                out = {"error": f"{type(e).__name__}: {e}"}
            if out.get("held"):  # nothing was sent; its ToolMessage comes from await_review
                pending.append({**out, "toolCallId": call["id"], "tool": call["name"],
                                "args": call["args"]})
            else:
                results.append(ToolMessage(json.dumps(out), tool_call_id=call["id"],
                                           name=call["name"]))
        return {"messages": results, "pending": pending}

    def await_review(state: State):
        held, rest = state["pending"][0], state["pending"][1:]
        # The run pauses here until resumed; on resume the node restarts and interrupt() returns.
        reply = interrupt({
            "question": f"Airlock holds {held['airlockTool']} ({held['tool']} {held['args']}) "
                        f"as review {held['reviewId']}; nothing was sent. A reviewer approves or "
                        f"rejects it in Airlock. Resume this run to read the decision.",
            "reviewId": held["reviewId"], "tool": held["tool"], "args": held["args"],
            "airlockTool": held["airlockTool"], "expiresAt": held["expiresAt"],
            "lastCheck": held.get("lastCheck"),  # what the previous resume found, if any
        })
        wait = int((reply or {}).get("wait", 30))
        try:
            r = http.get(f"{AIRLOCK}/v1/reviews/{held['reviewId']}", params={"wait": wait},
                         timeout=wait + 30)
            review = r.json() if r.ok else {"state": "unreadable", "status": r.status_code}
        except (requests.RequestException, ValueError) as e:
            review = {"state": "unreadable", "error": str(e)}
        if review.get("state") not in FINAL_STATES:  # still pending (or unreadable): ask again
            seen = {k: review[k] for k in ("state", "status", "error") if k in review}
            return {"pending": [{**held, "lastCheck": seen}, *rest]}
        result = review.get("result") or {}
        # The agent's view holds the state, the outcome word and its own request's result:
        # never who decided or why (reviewers' names and comments stay in Airlock).
        outcome = {"reviewId": held["reviewId"], "state": review["state"],
                   "outcome": review.get("outcome"),
                   "upstreamStatus": result.get("status"), "error": result.get("error"),
                   "body": (result.get("body") or "")[:2000]}
        return {"messages": [ToolMessage(json.dumps(outcome), tool_call_id=held["toolCallId"],
                                         name=held["tool"])],
                "pending": rest}

    def after_agent(state: State):
        return "tools" if state["messages"][-1].tool_calls else END

    def after_tools(state: State):
        return "await_review" if state.get("pending") else "agent"

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tools", tools)
    g.add_node("await_review", await_review)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", after_agent, ["tools", END])
    g.add_conditional_edges("tools", after_tools, ["await_review", "agent"])
    g.add_conditional_edges("await_review", after_tools, ["await_review", "agent"])
    return g.compile(checkpointer=checkpointer)


def report(graph, inp, config) -> None:
    """Runs the graph and prints what each node did as JSON lines."""
    for chunk in graph.stream(inp, config, stream_mode="updates", durability="sync"):
        for node, update in chunk.items():
            if node == "__interrupt__":
                for i in update:
                    emit("interrupt", **i.value)
                continue
            for m in (update or {}).get("messages", []):
                if isinstance(m, AIMessage) and m.tool_calls:
                    for c in m.tool_calls:
                        emit("tool_call", tool=c["name"], args=c["args"])
                elif isinstance(m, AIMessage):
                    emit("answer", text=m.content)
                elif node == "await_review":
                    emit("review_outcome", tool=m.name, **json.loads(m.content))
                else:
                    emit("tool_result", tool=m.name, **json.loads(m.content))
            if node == "tools":
                for p in update.get("pending", []):
                    emit("held", tool=p["tool"], reviewId=p["reviewId"],
                         airlockTool=p["airlockTool"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--scripted", action="store_true", help="deterministic model (no LLM)")
    who.add_argument("--model", help='a LangChain chat model, e.g. "openai:gpt-4o-mini"')
    p.add_argument("--script", choices=["github", "stripe"], default="github",
                   help="scripted model: read then delete --repo, or read then refund --charge")
    p.add_argument("--repo", default="octo/demo")
    p.add_argument("--charge", default="ch_demo")
    p.add_argument("--task", help="instruction for a real model")
    p.add_argument("--db", default=os.environ.get("AGENT_DB", "agent-checkpoints.sqlite"),
                   help="SQLite checkpoint file (keeps paused runs across processes)")
    p.add_argument("--thread", default="demo", help="run id; resume names the same one")
    p.add_argument("--wait", type=int, default=30,
                   help="resume: seconds to wait on Airlock for a decision")
    p.add_argument("command", choices=["run", "resume"],
                   help="run: start a new run; resume: continue a paused one")
    args = p.parse_args()

    with SqliteSaver.from_conn_string(args.db) as checkpointer:
        model = (scripted(args.script, args.repo, args.charge) if args.scripted
                 else chat_model(args.model))
        graph = build(model, checkpointer)
        config = {"configurable": {"thread_id": args.thread}}
        state = graph.get_state(config)
        if args.command == "run":
            if state.values:  # a second run would repeat the held call as a new review
                emit("error", message=f"thread {args.thread!r} exists; resume it or pick another")
                return 2
            task = args.task or f"Check that {args.repo} exists, then delete it."
            inp = {"messages": [SystemMessage("Use the tools. Irreversible calls are reviewed "
                                              "by a human through Airlock."),
                                HumanMessage(task)], "pending": []}
        else:
            if not state.interrupts:  # finished (or never started): nothing is re-executed
                emit("nothing_to_resume", thread=args.thread)
                return 0
            inp = Command(resume={"wait": args.wait})
        report(graph, inp, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
