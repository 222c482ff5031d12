"""An agent that holds no GitHub token and calls the GitHub API through Airlock.

It reads a repository (passes straight through), then deletes it: Airlock holds the
DELETE for a human and answers 423 with a review id. The agent then waits for the
decision on Airlock's own endpoint (https://airlock.local/v1/reviews/{id}?wait=N)
and reports the outcome. Airlock injects the real credential only when the approved
call is executed.

Environment (nothing else is needed, and no provider token is ever given to the agent):
  HTTPS_PROXY=http://AGENT:AGENT_TOKEN@127.0.0.1:8080   # from `airlock agents add AGENT`
  REQUESTS_CA_BUNDLE=/path/to/airlock/certs/ca.pem       # `airlock ca export`
  REPO=octo/demo                                         # optional
"""

import json
import os
import sys
import time

import requests

API = "https://api.github.com"


def main() -> int:
    repo = os.environ.get("REPO", "octo/demo")
    session = requests.Session()  # picks HTTPS_PROXY and REQUESTS_CA_BUNDLE from the environment
    session.headers["Accept"] = "application/vnd.github+json"

    r = session.get(f"{API}/repos/{repo}", timeout=30)
    print(json.dumps({"step": "read", "status": r.status_code}), flush=True)

    r = session.delete(f"{API}/repos/{repo}", timeout=30)
    if r.status_code != 423:
        print(json.dumps({"step": "delete", "status": r.status_code, "held": False}), flush=True)
        return 1
    held = r.json()
    review_id = held["reviewId"]
    print(
        json.dumps(
            {
                "step": "delete",
                "status": 423,
                "held": True,
                "reviewId": review_id,
                "tool": held.get("tool"),
                "outcome": r.headers.get("Airlock-Outcome"),
            }
        ),
        flush=True,
    )

    deadline = time.time() + float(os.environ.get("WAIT_SECONDS", "60"))
    while time.time() < deadline:
        r = session.get(f"https://airlock.local/v1/reviews/{review_id}?wait=20", timeout=40)
        r.raise_for_status()
        review = r.json()
        if review["state"] not in ("pending", "approved", "executing"):
            result = review.get("result") or {}
            print(
                json.dumps(
                    {
                        "step": "outcome",
                        "state": review["state"],
                        "upstream_status": result.get("status"),
                    }
                ),
                flush=True,
            )
            return 0
    print(json.dumps({"step": "outcome", "state": "timeout"}), flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
