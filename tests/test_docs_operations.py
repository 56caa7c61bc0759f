"""docs/operations.md stays true to the code: every `jit-bridge …` command it quotes parses
with the real command line, every `JIT_BRIDGE_*` variable names a setting, every metric it
quotes is one the bridge exports, and every `deploy/…` file it names exists."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from bridge.cli import _parser
from bridge.metrics import Metrics
from bridge.settings import _OTHER_VARIABLES, ENV_PREFIX, FILE_FIELDS, Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"

#: Shell words that end one command and may start another.
_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
#: Quoted text that starts with the word jit-bridge without being a command: the listener's
#: id alone, and the Keycloak listener's log lines.
NOT_COMMANDS = re.compile(r"jit-bridge( event listener | refused |$)")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def code_snippets(text: str) -> list[str]:
    """Fenced blocks (continuation lines joined) and inline code spans."""
    snippets: list[str] = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
    for block in fenced.findall(text):
        snippets += block.replace("\\\n", " ").splitlines()
    outside = fenced.sub("", text)
    # An inline span may wrap over a line in the Markdown source.
    snippets += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", outside)]
    return snippets


def jit_bridge_commands(text: str) -> list[list[str]]:
    """The arguments of every `jit-bridge` invocation: the word `jit-bridge` (or a path ending
    in /jit-bridge) where a command starts, after environment assignments or `--`."""
    found = []
    for snippet in code_snippets(text):
        if NOT_COMMANDS.match(snippet.strip()):
            continue
        try:
            lexer = shlex.shlex(snippet, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = list(lexer)
        except ValueError:  # not shell (an unbalanced quote in prose)
            continue
        starts = True
        command: list[str] | None = None
        for word in words:
            if word in _SEPARATORS:
                if command is not None:
                    found.append(command)
                command, starts = None, True
                continue
            if command is not None:
                command.append(word)
            elif starts and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
                continue  # VAR=value before the command
            elif starts and (word == "jit-bridge" or word.endswith("/bin/jit-bridge")):
                command = []
            elif word == "--":
                starts = True  # `kubectl exec … -- jit-bridge …`
            else:
                starts = False
        if command is not None:
            found.append(command)
    return found


def test_the_doc_quotes_commands() -> None:
    commands = jit_bridge_commands(doc_text())
    assert ["db", "upgrade"] in commands
    assert len(commands) >= 10


@pytest.mark.parametrize(
    "args", jit_bridge_commands(doc_text()), ids=lambda args: " ".join(args)[:60] or "-"
)
def test_every_quoted_command_parses(args: list[str]) -> None:
    parser = _parser()
    out, err = io.StringIO(), io.StringIO()
    code: object = None
    parsed = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            parsed = parser.parse_args(args)
    except SystemExit as exc:
        code = exc.code
    # --help and --version exit 0 after printing; anything else is a usage error.
    assert code in (None, 0), f"jit-bridge {shlex.join(args)}: {err.getvalue().strip()}"
    if code == 0:
        return
    assert hasattr(parsed, "handler"), f"jit-bridge {shlex.join(args)} names no command"


def known_variables() -> set[str]:
    names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    names |= {f"{ENV_PREFIX}{name.upper()}_FILE" for name in FILE_FIELDS}
    return names | {f"{ENV_PREFIX}{name}" for name in _OTHER_VARIABLES}


def test_every_quoted_setting_variable_exists() -> None:
    quoted = set(re.findall(r"\bJIT_BRIDGE_[A-Z0-9_]+", doc_text()))
    assert quoted, "the doc quotes no JIT_BRIDGE_* variable"
    assert sorted(quoted - known_variables()) == []


def test_every_quoted_setting_name_exists() -> None:
    """`name = value` and `<name>` in code spans that look like settings (`poll_events = true`)."""
    text = doc_text()
    quoted = set(re.findall(r"`([a-z][a-z0-9_]*)\s+=\s+[^`]+`", text))
    assert "poll_events" in quoted
    assert sorted(quoted - set(Settings.model_fields)) == []


def exported_metric_names() -> set[str]:
    """Every sample name /metrics can carry: counters with `_total`, histograms' series."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    return names


def test_every_quoted_metric_is_exported() -> None:
    quoted = set(re.findall(r"\bjit_bridge_[a-z0-9_]+", doc_text()))
    assert "jit_bridge_workers_stopped" in quoted
    assert sorted(quoted - exported_metric_names()) == []


def test_every_quoted_deploy_file_exists() -> None:
    quoted = set(re.findall(r"\bdeploy/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]", doc_text()))
    assert quoted
    missing = sorted(path for path in quoted if not (ROOT / path).exists())
    assert missing == []


def test_every_alert_has_its_runbook_section() -> None:
    """deploy/prometheus/alerts.yml points each alert's runbook_url at the section of this
    doc named like the alert (GitHub's anchor of `### JitBridgeDown` is `#jitbridgedown`)."""
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    alerts = re.findall(r"^\s*- alert: (\w+)\s*$", rules, re.MULTILINE)
    assert alerts
    urls = re.findall(r"runbook_url: (\S+)", rules)
    assert urls == [f"docs/operations.md#{name.lower()}" for name in alerts]
    headings = set(re.findall(r"^### (\w+)\s*$", doc_text(), re.MULTILINE))
    assert sorted(set(alerts) - headings) == []


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    found = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_link_leads_somewhere() -> None:
    """Relative links reach a file of the repository, and a `#section` one of its headings."""
    links = re.findall(r"\]\(([^)\s]+)\)", doc_text())
    assert any(link.startswith("#") for link in links)
    broken = []
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (DOC.parent / path).resolve() if path else DOC
        if not target.exists() or (
            anchor and anchor not in anchors(target.read_text(encoding="utf-8"))
        ):
            broken.append(link)
    assert broken == []
