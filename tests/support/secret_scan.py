"""No secret in any log or workflow history of the test run: the session's last check (tests/conftest.py).

Each secret the tests make is remembered here (`remember_secret`): the API keys of `make_key`
(tests/support/auth.py), the tokens and private keys of the test identity provider (tests/support/oauth.py), the
session's payload key. Others are found where the run left them: key rings (`payload.key`, `secrets.key`,
`party-hash.key`) and development API keys (`dev-api-key`) under the run's temporary directory, and test modules'
constants named `…API_KEY`, `…PASSWORD`, `…SECRET` or `…TOKEN`.

Every Temporal server the run starts hands its histories over just before it stops (`collect_histories`, called
by tests/support/temporal_env.py): each run of each workflow. At the end of the session, `SESSION.findings(base)`
searches every event of them, as raw protobuf bytes and as JSON, in which only ids, types, payload metadata and
search attributes are in clear (our codec encrypts payloads; their ciphertext is left out), and also every
encrypted payload's plaintext, decrypted with the payload keys found: a secret must not be in a history even
encrypted. And every log the run wrote: each server process's log and every `*.log` under the run's temporary
directory `base`; and, raw, the `temporal.db` of each Temporal server `make run` started there. It looks for each
secret in each form it could take (as it is; raw key bytes also as base64, urlsafe base64 and hex; text also
URL-encoded and JSON-escaped, as our JSON logs hold it; an API key's secret part alone), and for anything shaped
like an API key (`mf_<id>_<secret>`) or a signed JWT. A finding names the secret by its label and first
characters, and where it was (file and line; server, workflow, run and event): never the whole secret.

One line is allowed to hold a secret: `make run` prints the development key it makes, once, to its console
(`mojaflow: development API key (…): <key>`), which tests/test_launcher.py captures into `launcher.log`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    ListClosedWorkflowExecutionsRequest,
    ListOpenWorkflowExecutionsRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from mojaflow.codec import ENCODING, KEY_ID
from mojaflow.keys import KEY_BYTES, derived_key_id

__all__ = ["SESSION", "Finding", "Scanner", "collect_histories", "remember_log", "remember_secret"]

_SHAPES = {
    "something shaped like an API key": re.compile(rb"mf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"),
    "something shaped like a signed JWT": re.compile(
        rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"
    ),
}
_RING_FILES = ("payload.key", "secrets.key", "party-hash.key")
_SECRET_NAME = re.compile(r"(^|_)(API_KEY|PASSWORD|SECRET|TOKEN)$")
_DEV_KEY_LINE = re.compile(rb"^mojaflow: development API key \(client_key \w+, operator\), also in .*: (mf_\S+)$")
_MIN_FORM = 12  # shorter forms would match by chance


@dataclass(frozen=True)
class Finding:
    label: str
    shown: str  # the secret's first characters
    where: str

    def __str__(self) -> str:
        return f"{self.label} ({self.shown}…) in {self.where}"


@dataclass
class _Secret:
    label: str
    forms: tuple[bytes, ...]
    raw_key: bytes | None = None  # 32 random bytes: maybe a payload key, tried on encrypted payloads

    @property
    def shown(self) -> str:
        return self.forms[0][:6].decode(errors="replace")


@dataclass
class _History:
    server: str
    workflow_id: str
    run_id: str
    history: History


@dataclass
class Scanner:
    secrets: dict[bytes, _Secret] = field(default_factory=dict)  # by first form: each remembered once
    logs: set[Path] = field(default_factory=set)
    histories: list[_History] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be searched: the scan fails
    notes: list[str] = field(default_factory=list)  # what was searched less deeply (warnings)
    payload_keys: dict[str, bytes] = field(default_factory=dict)  # by key id, to read encrypted payloads
    searched_logs: int = 0
    searched_databases: int = 0
    searched_payloads: int = 0

    def remember_secret(self, label: str, value: str | bytes) -> None:
        forms = _forms(value)
        if forms and forms[0] not in self.secrets:
            raw_key = value if isinstance(value, bytes) and len(value) == KEY_BYTES else None
            self.secrets[forms[0]] = _Secret(label, forms, raw_key)
            if raw_key is not None:
                self.payload_keys.setdefault(derived_key_id(raw_key), raw_key)

    def remember_log(self, path: Path) -> None:
        self.logs.add(Path(path))

    async def collect_histories(self, client: Client, server: str) -> None:
        """Fetch every history on `client`'s server now (before it stops), to be searched at the end."""
        try:
            executions = await _executions(client)
            gate = asyncio.Semaphore(8)

            async def fetch(workflow_id: str, run_id: str) -> None:
                async with gate:
                    history = await _history(client, workflow_id, run_id)
                self.histories.append(_History(server, workflow_id, run_id, history))

            await asyncio.gather(*(fetch(workflow_id, run_id) for workflow_id, run_id in executions))
        except RPCError as error:
            self.problems.append(f"the histories of the {server} could not be fetched: {error.status.name}")

    def findings(self, base: Path | None = None) -> list[Finding]:
        """Search every log and history for every secret (see the module's docstring)."""
        if base is not None:
            self._discover(base)
        haystacks = [*self._log_haystacks(base), *self._history_haystacks(), *self._server_databases(base)]
        joined = b"\0".join(data for _, data in haystacks)  # one pass per secret over everything, then locate
        found: list[Finding] = []
        for secret in self.secrets.values():
            for form in secret.forms:
                if form in joined:
                    found += [Finding(secret.label, secret.shown, where) for where, data in haystacks if form in data]
        for label, shape in _SHAPES.items():
            if shape.search(joined):
                for where, data in haystacks:
                    found += [Finding(label, match.group()[:6].decode(), where) for match in shape.finditer(data)]
        return list(dict.fromkeys(found))

    def summary(self) -> str:
        events = sum(len(item.history.events) for item in self.histories)
        return (
            f"secret scan: {len(self.secrets)} secrets searched in {self.searched_logs} log files, "
            f"{len(self.histories)} workflow histories ({events} events, {self.searched_payloads} payloads decrypted) "
            f"and {self.searched_databases} Temporal database files of `make run`"
        )

    def _log_haystacks(self, base: Path | None) -> list[tuple[str, bytes]]:
        paths = {path for path in self.logs if path.is_file()} | (set(base.rglob("*.log")) if base else set())
        self.searched_logs = len(paths)
        return [
            (f"{path}:{number}", _without_dev_key(line))
            for path in sorted(paths)
            for number, line in enumerate(path.read_bytes().splitlines(), 1)
        ]

    def _server_databases(self, base: Path | None) -> list[tuple[str, bytes]]:
        """Temporal servers `make run` started (tests/test_launcher.py) keep their histories in their data dir's
        `temporal.db`: searched as raw bytes (no decryption there)."""
        paths = sorted(path for path in base.rglob("temporal.db*") if path.is_file()) if base else []
        self.searched_databases = len(paths)
        return [(f"the Temporal database {path}", path.read_bytes()) for path in paths]

    def _history_haystacks(self) -> list[tuple[str, bytes]]:
        ciphers = {key_id: AESGCM(key) for key_id, key in self.payload_keys.items()}
        unreadable: set[str] = set()
        haystacks = []
        for item in self.histories:
            for event in item.history.events:
                where = (
                    f"history of {item.workflow_id} (run {item.run_id}) on the {item.server}, "
                    f"event {event.event_id} ({event.WhichOneof('attributes')})"
                )
                clear = HistoryEvent()
                clear.CopyFrom(event)
                plaintexts = []
                for payload in _payloads(clear):
                    if payload.metadata.get("encoding") == ENCODING:
                        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
                        plaintext = _decrypt(ciphers, key_id, payload.data)
                        if plaintext is None:
                            unreadable.add(key_id)
                        else:
                            plaintexts.append(plaintext)
                            self.searched_payloads += 1
                        payload.data = b""  # ciphertext: nothing to find in it
                data = b"\0".join([clear.SerializeToString(), json_format.MessageToJson(clear).encode(), *plaintexts])
                haystacks.append((where, data))
        if unreadable:
            self.notes.append(f"encrypted payloads of unknown key ids {sorted(unreadable)}: plaintext not searched")
        return haystacks

    def _discover(self, base: Path) -> None:
        for name in _RING_FILES:
            for path in base.rglob(name):
                for line in path.read_text(errors="replace").splitlines():
                    key_id, _, encoded = line.strip().rpartition(":")
                    try:
                        key = base64.b64decode(encoded, validate=True)
                    except (binascii.Error, ValueError):
                        continue
                    self.remember_secret(f"{name} key {key_id or '(no id)'}", key)
                    if name == "payload.key" and key_id:
                        self.payload_keys[key_id] = key
        for path in base.rglob("dev-api-key"):
            self.remember_secret("development API key", path.read_text().strip())
        for module in list(sys.modules.values()):
            if (getattr(module, "__name__", "") or "").startswith("tests."):
                for name, value in list(vars(module).items()):
                    if isinstance(value, str | bytes) and _SECRET_NAME.search(name):
                        self.remember_secret(f"{module.__name__}.{name}", value)


def _forms(value: str | bytes) -> tuple[bytes, ...]:
    if isinstance(value, str):
        forms = [value.encode(), quote(value, safe="").encode(), quote_plus(value).encode()]  # also as in a URL or form
        # ... and as a JSON string holds it (our JSON logs, with or without non-ASCII escaped)
        forms += [json.dumps(value, ensure_ascii=ascii)[1:-1].encode() for ascii in (False, True)]
        if value.startswith("mf_") and value.count("_") >= 2:
            forms.append(value.split("_", 2)[2].encode())  # an API key's secret part alone
    else:
        forms = [
            base64.b64encode(value),
            base64.b64encode(value).rstrip(b"="),
            base64.urlsafe_b64encode(value).rstrip(b"="),
            value.hex().encode(),
            value,
        ]
    return tuple(dict.fromkeys(form for form in forms if len(form) >= _MIN_FORM))


def _without_dev_key(line: bytes) -> bytes:
    """The one line that shows the development key, without it (see the module's docstring)."""
    match = _DEV_KEY_LINE.match(line.strip())
    return line.replace(match.group(1), b"<the development key, shown once>") if match else line


def _payloads(message: Message) -> Iterator[Payload]:
    """Every `Payload` inside `message` (inputs, results, memo, search attributes, headers, failures...)."""
    for descriptor, value in message.ListFields():
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
        else:
            items = list(value) if descriptor.is_repeated else [value]
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from _payloads(item)


def _decrypt(ciphers: dict[str, AESGCM], key_id: str, data: bytes) -> bytes | None:
    candidates = [ciphers[key_id]] if key_id in ciphers else list(ciphers.values())
    for cipher in candidates:
        try:
            return cipher.decrypt(data[:12], data[12:], None)
        except (InvalidTag, ValueError):
            continue
    return None


async def _executions(client: Client) -> list[tuple[str, str]]:
    try:
        return [(execution.id, execution.run_id) async for execution in client.list_workflows()]
    except RPCError as error:
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
    # The time-skipping test server has no visibility queries: the open and closed listings instead
    service = client.workflow_service
    found: list[tuple[str, str]] = []
    token = b""
    while True:
        opened = await service.list_open_workflow_executions(
            ListOpenWorkflowExecutionsRequest(namespace=client.namespace, maximum_page_size=1000, next_page_token=token)
        )
        found += [(item.execution.workflow_id, item.execution.run_id) for item in opened.executions]
        if not (token := opened.next_page_token):
            break
    while True:
        closed = await service.list_closed_workflow_executions(
            ListClosedWorkflowExecutionsRequest(
                namespace=client.namespace, maximum_page_size=1000, next_page_token=token
            )
        )
        found += [(item.execution.workflow_id, item.execution.run_id) for item in closed.executions]
        if not (token := closed.next_page_token):
            return found


async def _history(client: Client, workflow_id: str, run_id: str) -> History:
    history = History()
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                next_page_token=token,
                maximum_page_size=1000,
            )
        )
        history.events.extend(page.history.events)
        token = page.next_page_token
        if not token:
            return history


SESSION = Scanner()  # the test run's
remember_secret = SESSION.remember_secret
remember_log = SESSION.remember_log
collect_histories = SESSION.collect_histories
