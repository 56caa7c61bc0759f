"""Fast fake Keycloak admin API and Tines API serving a synthetic organisation (bench/org.py).

Run in their own process so the measured bridge process holds only the bridge:

    python -m bench.fakes --users 10000 --drift 0.02 --target-latency-ms 20

prints one JSON line (`keycloak`, `target`, `mapping` file) and serves until stdin closes.

Only what the bridge reads and writes, shaped like the real APIs (reference/keycloak.md,
reference/tines.md): Keycloak `users` (paged, by email, by id), `users/{id}/groups`, realm
role mappings, `groups?search=&exact=true`, `groups/{id}/children`, `groups/{id}/members`,
`group-by-path`, and the client-credentials token endpoint; Tines `admin/users` (with
`filter=TENANT_OWNER`, `include=team_memberships`; one user by id or email), `teams`,
`teams/{id}/members`, `invite_member`, `remove_member`, user create and update. Every answer
waits the configured latency first; list pages are serialised once and cached, so the fakes
cost little CPU next to the bridge on a 2-core machine. `GET /__bench/stats` returns the request
counts.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from bench.org import Group, Org, Shape, build
from tests.tines_fake.handler import Answer, JsonHandler, start

Json = Any
Route = Callable[[str, list[str], dict[str, str], Json], tuple[int, Json]]


class _Counts:
    """Requests by method, and the CPU time this fake's process has used (both fakes of one
    process report the same), so a benchmark can tell whether the fakes kept up."""

    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, method: str) -> None:
        with self.lock:
            self.by_method[method] += 1

    def as_json(self) -> Json:
        reads = self.by_method["GET"]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "reads": reads,
            "writes": sum(self.by_method.values()) - reads,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        }


def _page(items: list[Json], query: dict[str, str]) -> list[Json]:
    first = int(query.get("first", 0))
    return items[first : first + int(query.get("max", 100))]


def _group_json(group: Group, sub_groups: list[Json] | None = None) -> Json:
    return {
        "id": group.id,
        "name": group.name,
        "path": group.path,
        "subGroupCount": len(group.children),
        "subGroups": sub_groups or [],
    }


class FakeKeycloak:
    """The admin REST API of one realm, read-only."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.users = {str(u["id"]): u for u in org.users}
        self.by_email = {str(u["email"]).lower(): u for u in org.users}
        self.paths = {g.path: g for g in org.groups_by_id.values()}

    def route(
        self, method: str, parts: list[str], query: dict[str, str], body: Json
    ) -> tuple[int, Json]:
        if parts[-2:] == ["openid-connect", "token"]:
            return 200, {"access_token": "bench", "expires_in": 3600, "token_type": "Bearer"}
        if parts[:2] != ["admin", "realms"] or len(parts) < 4:
            return 404, {"error": "not found"}
        kind, rest = parts[3], parts[4:]
        if kind == "users":
            return self._users(rest, query)
        if kind == "groups":
            return self._groups(rest, query)
        if kind == "group-by-path":
            group = self.paths.get("/" + "/".join(rest))
            if group is None:
                return 404, {"error": "Group path does not exist"}
            return 200, _group_json(group)
        return 404, {"error": "not found"}

    def _users(self, rest: list[str], query: dict[str, str]) -> tuple[int, Json]:
        if not rest:
            if "email" in query:
                found = self.by_email.get(query["email"].lower())
                return 200, [found] if found else []
            return 200, _page(self.org.users, query)
        user = self.users.get(rest[0])
        if user is None:
            return 404, {"error": "User not found"}
        if len(rest) == 1:
            return 200, user
        if rest[1] == "groups":
            paths = self.org.user_groups[rest[0]]
            return 200, _page([_group_json(self.paths[p]) for p in paths], query)
        if rest[1] == "role-mappings":
            return 200, []
        return 404, {"error": "not found"}

    def _groups(self, rest: list[str], query: dict[str, str]) -> tuple[int, Json]:
        if not rest:
            wanted = query.get("search")
            roots = []
            for root in self.org.roots:
                matching = [_group_json(c) for c in root.children if c.name == wanted]
                if wanted is None or root.name == wanted or matching:
                    roots.append(_group_json(root, matching))
            return 200, _page(roots, query)
        group = self.org.groups_by_id.get(rest[0])
        if group is None:
            return 404, {"error": "Could not find group by id"}
        if rest[1:] == ["children"]:
            return 200, _page([_group_json(c) for c in group.children], query)
        if rest[1:] == ["members"]:
            members = [self.users[uid] for uid in group.members]
            return 200, _page(members, query)
        return 404, {"error": "not found"}


class FakeTines:
    """Users, teams and memberships of one tenant; `admin/users` and members pages follow
    Tines' `page`/`per_page` paging with `meta.next_page_number`."""

    def __init__(self, org: Org) -> None:
        self.users: dict[int, Json] = {int(str(u["id"])): dict(u) for u in org.target_users}
        self.emails = {str(u["email"]).lower(): uid for uid, u in self.users.items()}
        self.team_names = dict(org.team_names)
        self.members: dict[int, dict[int, str]] = {t: dict(m) for t, m in org.team_members.items()}
        self.user_teams: dict[int, dict[int, str]] = {}
        for team, members in self.members.items():
            for uid, role in members.items():
                self.user_teams.setdefault(uid, {})[team] = role
        self.lock = threading.Lock()

    def route(
        self, method: str, parts: list[str], query: dict[str, str], body: Json
    ) -> tuple[int, Json]:
        if parts[:2] != ["api", "v1"]:
            return 404, {"error": "not found"}
        path = parts[2:]
        with self.lock:
            if path == ["admin", "users"]:
                return self._create_user(body) if method == "POST" else self._list_users(query)
            if path[:2] == ["admin", "users"] and method == "PUT":
                return self._update_user(int(path[2]), body)
            if len(path) == 3 and path[:2] == ["admin", "users"] and method == "GET":
                return self._get_user(path[2], query)
            if path == ["teams"]:
                items = [{"id": t, "name": n, "groups": []} for t, n in self.team_names.items()]
                return 200, _tines_page("teams", items, query)
            if len(path) == 3 and path[0] == "teams" and int(path[1]) in self.members:
                return self._team_call(int(path[1]), path[2], body, query)
        return 404, {"error": f"No route matches {method} {'/'.join(path)}"}

    def _list_users(self, query: dict[str, str]) -> tuple[int, Json]:
        users = list(self.users.values())
        if query.get("filter") == "TENANT_OWNER":
            users = [u for u in users if u["admin"]]
        items = [self._with_teams(u, query) for u in _tines_slice(users, query)]
        return 200, _tines_meta("admin/users", items, len(users), query)

    def _get_user(self, ref: str, query: dict[str, str]) -> tuple[int, Json]:
        """By id, or by email in its place (as Tines documents)."""
        if ref.isdigit() and int(ref) in self.users:
            return 200, self._with_teams(self.users[int(ref)], query)
        if ref.lower() not in self.emails:
            return 404, {"error": "not found"}
        return 200, self._with_teams(self.users[self.emails[ref.lower()]], query)

    def _with_teams(self, user: Json, query: dict[str, str]) -> Json:
        if query.get("include") != "team_memberships":
            return user
        return {
            **user,
            "team_memberships": [
                {"team_id": t, "team_name": self.team_names[t], "role": r}
                for t, r in sorted(self.user_teams.get(user["id"], {}).items())
            ],
        }

    def _create_user(self, body: Json) -> tuple[int, Json]:
        if str(body.get("email", "")).lower() in self.emails:
            return 422, {"error": "Email has already been taken"}
        uid = max(self.users, default=0) + 1
        self.emails[str(body["email"]).lower()] = uid
        self.users[uid] = {
            "id": uid,
            "admin": False,
            "tenant_permissions": [],
            "is_active": True,
            **body,
        }
        return 200, self.users[uid]

    def _update_user(self, uid: int, body: Json) -> tuple[int, Json]:
        if uid not in self.users:
            return 404, {"error": "not found"}
        self.users[uid].update(body)
        return 200, self.users[uid]

    def _team_call(
        self, team: int, call: str, body: Json, query: dict[str, str]
    ) -> tuple[int, Json]:
        members = self.members[team]
        if call == "members":
            items = [self._member(uid, role) for uid, role in sorted(members.items())]
            return 200, _tines_page("members", items, query)
        uid = int(body["user_id"])
        if call == "invite_member":
            members[uid] = body.get("role") or "VIEWER"
            self.user_teams.setdefault(uid, {})[team] = members[uid]
            return 200, self._member(uid, members[uid])
        if call == "remove_member":
            if members.pop(uid, None) is None:
                return 404, {"error": "User is not a member of this team"}
            self.user_teams.get(uid, {}).pop(team, None)
            return 200, {"deleted_id": uid}
        return 404, {"error": "not found"}

    def _member(self, uid: int, role: str) -> Json:
        user = self.users[uid]
        return {"id": uid, "email": user["email"], "is_admin": user["admin"], "role": role}


def _tines_slice(items: list[Json], query: dict[str, str]) -> list[Json]:
    page, per_page = int(query.get("page", 1)), min(500, int(query.get("per_page", 20)))
    return items[(page - 1) * per_page : page * per_page]


def _tines_meta(key: str, items: list[Json], total: int, query: dict[str, str]) -> Json:
    page, per_page = int(query.get("page", 1)), min(500, int(query.get("per_page", 20)))
    has_next = page * per_page < total
    return {key: items, "meta": {"next_page_number": page + 1 if has_next else None}}


def _tines_page(key: str, items: list[Json], query: dict[str, str]) -> Json:
    return _tines_meta(key, _tines_slice(items, query), len(items), query)


def serve(route: Route, latency: float) -> ThreadingHTTPServer:
    """An HTTP/1.1 keep-alive server on a free 127.0.0.1 port, in a daemon thread."""
    counts = _Counts()

    class Handler(JsonHandler):
        def respond(self, method: str, path: str, query: dict[str, str], body: Json) -> Answer:
            if path == "/__bench/stats":
                return 200, counts.as_json(), {}
            counts.count(method)
            if latency:
                time.sleep(latency)
            parts = [unquote(p) for p in path.strip("/").split("/")]
            status, answer = route(
                method, parts, query, body if not isinstance(body, str) else None
            )
            return status, answer, {}

    return start(Handler)


def _url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fakes", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--drift", type=float, default=0.0, help="share of users to drift")
    parser.add_argument("--keycloak-latency-ms", type=float, default=5.0)
    parser.add_argument("--target-latency-ms", type=float, default=20.0)
    parser.add_argument("--departments", type=int, default=Shape.departments)
    parser.add_argument("--leaves", type=int, default=Shape.leaves_per_department)
    parser.add_argument("--mapped-leaves", type=int, default=Shape.mapped_leaves)
    parser.add_argument("--teams", type=int, default=Shape.teams)
    parser.add_argument(
        "--serve",
        choices=["both", "keycloak", "target"],
        default="both",
        help="serve one fake only (a benchmark runs each in its own process: no shared GIL)",
    )
    args = parser.parse_args(argv)
    org = build(
        Shape(
            users=args.users,
            drift=args.drift,
            departments=args.departments,
            leaves_per_department=args.leaves,
            mapped_leaves=args.mapped_leaves,
            teams=args.teams,
        )
    )
    urls: dict[str, str] = {}
    if args.serve in ("both", "keycloak"):
        urls["keycloak"] = _url(serve(FakeKeycloak(org).route, args.keycloak_latency_ms / 1000))
    if args.serve in ("both", "target"):
        urls["target"] = _url(serve(FakeTines(org).route, args.target_latency_ms / 1000))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as mapping_file:
        json.dump(org.mapping_json, mapping_file)
    print(
        json.dumps(
            {
                **urls,
                "mapping": mapping_file.name,
                "drifted_users": org.drifted_users,
                "selectors": len(org.mapping.selectors()),
                "teams": len(org.team_names),
                "user_ids": [u["id"] for u in org.users[:: max(1, len(org.users) // 200)]],
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # serve until the parent closes our stdin (or ends)
    Path(mapping_file.name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
