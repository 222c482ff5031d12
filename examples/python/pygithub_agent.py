"""The same token-less agent with PyGithub: the library is used as usual, without a token;
Airlock authenticates the agent (HTTPS_PROXY credentials) and injects the real GitHub token.
A held call surfaces as a GithubException with status 423 carrying Airlock's review id.

Environment: HTTPS_PROXY=http://AGENT:TOKEN@127.0.0.1:8080, REQUESTS_CA_BUNDLE=ca.pem, REPO=o/r
"""

import json
import os
import sys

from github import Github, GithubException


def main() -> int:
    repo_name = os.environ.get("REPO", "octo/demo")
    gh = Github()  # no token: Airlock holds it
    repo = gh.get_repo(repo_name, lazy=True)
    try:
        repo.delete()
    except GithubException as e:
        if e.status == 423:
            print(json.dumps({"held": True, "reviewId": e.data.get("reviewId"), "tool": e.data.get("tool")}))
            return 0
        print(json.dumps({"held": False, "status": e.status}))
        return 1
    print(json.dumps({"held": False, "status": "deleted without review"}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
