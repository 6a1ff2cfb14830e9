"""The calls of `mojaflow cbs-check` and how their answers are judged.

An answer is judged twice: by the contract (`cbs-contract.openapi.yaml`: the documented statuses and schemas) and by
how mojaflow's own CBS client takes it (`activities.core_banking.REFUSALS`): only the documented status with one of
its documented codes is a refusal, which mojaflow never retries; everything else, 5xx first, is unavailability,
which it retries. So a refusal answered as a 5xx is retried instead of reported, and any other answer the client
does not expect turns a business decision into an endless retry or the other way round: both are printed as such.

Lines never carry a name, a party id or an account: only operations, statuses, codes, keys and ids the check made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from activities.core_banking import REFUSALS  # the worker's own classification: the check must not drift from it
from mojaflow.cbs_contract import Contract

__all__ = ["Answer", "Probe", "Report", "Verdict", "judge_refusal", "judge_success"]

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Answer:
    """What the CBS answered: `status` None when nothing came back (`failure` says why)."""

    status: int | None
    body: Any
    failure: str | None = None

    @property
    def code(self) -> str | None:
        """The error body's code when it has the contract's shape (snake_case): anything else is not printed."""
        code = self.body.get("code") if isinstance(self.body, dict) else None
        return code if isinstance(code, str) and _SNAKE_CASE.match(code) else None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.failure})"
        return f"HTTP {self.status}" + (f" {self.code}" if self.code and self.status >= 400 else "")


@dataclass
class Report:
    """The findings, one printed line each as they come; `exit_code` is 1 when any check failed."""

    out: Callable[[str], None]
    findings: list[tuple[Verdict, str, str]] = field(default_factory=list)

    def add(self, verdict: Verdict, check: str, reason: str) -> bool:
        self.findings.append((verdict, check, reason))
        self.out(f"{verdict.value}  {check:<38} {reason}")
        return verdict is Verdict.PASS

    def expect(self, check: str, ok: bool, reason: str) -> bool:
        return self.add(Verdict.PASS if ok else Verdict.FAIL, check, reason)

    def skip(self, check: str, reason: str) -> None:
        self.add(Verdict.SKIP, check, reason)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for found, _, _ in self.findings if found is verdict)

    @property
    def exit_code(self) -> int:
        return 1 if self.count(Verdict.FAIL) else 0


def judge_success(answer: Answer, expected: tuple[int, ...], mojaflow_operation: str | None = None) -> str | None:
    """None when `answer` has one of the `expected` 2xx statuses, else why not (with what mojaflow would do)."""
    if answer.status in expected:
        return None
    mojaflow_operation = mojaflow_operation if mojaflow_operation in REFUSALS else None
    wanted = " or ".join(f"HTTP {status}" for status in expected)
    reason = f"expected {wanted}, got {answer.describe()}"
    if answer.status is not None and mojaflow_operation is not None and answer.status >= 400:
        if answer.code in REFUSALS[mojaflow_operation].get(answer.status, frozenset()):
            reason += ": mojaflow would fail the transfer with this refusal"
        else:
            reason += ": mojaflow would retry it as unavailability"
    return reason


def judge_refusal(answer: Answer, status: int, code: str, mojaflow_operation: str | None = None) -> str | None:
    """None when `answer` is the refusal `status` `code`, else why not and what mojaflow would do with it."""
    if answer.status == status and answer.code == code:
        return None
    mojaflow_operation = mojaflow_operation if mojaflow_operation in REFUSALS else None  # one it does not call
    reason = f"expected HTTP {status} {code}, got {answer.describe()}"
    if answer.status is None:
        return reason
    if answer.ok:
        return reason + ": accepted what the contract refuses"
    if answer.status >= 500:
        return reason + (
            ": a refusal answered as a 5xx is retried by mojaflow as unavailability, never reported "
            "(non-conforming, dangerous)"
        )
    if mojaflow_operation is None or answer.status < 400:
        return reason
    if answer.code in REFUSALS[mojaflow_operation].get(answer.status, frozenset()):
        return reason + f": mojaflow would take it as the refusal {answer.code}"
    return reason + (
        ": not a refusal mojaflow knows for this operation, so it would retry it as unavailability "
        "(non-conforming, dangerous)"
    )


class Probe:
    """Calls the contract's operations by operationId, and keeps what their answers taught about the schemas and
    about error messages (which never name a party)."""

    def __init__(self, http: httpx.AsyncClient, contract: Contract, private: list[str]) -> None:
        self._http = http
        self.contract = contract
        self._private = [value for value in private if value]
        self.schema: dict[tuple[str, int], list[str]] = {}  # (operationId, status) → the first answer's errors
        self.answers: dict[tuple[str, int], int] = {}
        self.error_answers = 0
        self.leaks: list[str] = []  # operations whose error message named the account or a party id

    async def call(
        self,
        operation_id: str,
        params: Mapping[str, str] | None = None,
        *,
        body: Any = None,
        raw: bytes | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        operation = self.contract.operations[operation_id]
        path = operation.path.format(**{name: quote(value, safe="") for name, value in (params or {}).items()})
        headers = {"content-type": "application/json"} if raw is not None else None
        try:
            response = await self._http.request(
                operation.method,
                path,
                json=body if raw is None else None,
                content=raw,
                headers=headers,
                params=dict(query) if query else None,
            )
        except httpx.HTTPError as error:
            return Answer(None, None, type(error).__name__)
        try:
            parsed = response.json()
        except (ValueError, UnicodeDecodeError):
            parsed = None
        answer = Answer(response.status_code, parsed)
        self._observe(operation_id, answer, response.headers.get("content-type", ""))
        return answer

    def _observe(self, operation_id: str, answer: Answer, content_type: str) -> None:
        assert answer.status is not None
        key = (operation_id, answer.status)
        self.answers[key] = self.answers.get(key, 0) + 1
        errors = self.contract.response_errors(operation_id, answer.status, answer.body)
        if answer.body is not None and not content_type.startswith("application/json"):
            errors.append("Content-Type is not application/json")
        if errors and not self.schema.get(key):
            self.schema[key] = errors
        self.schema.setdefault(key, errors)
        if answer.status >= 400:
            self.error_answers += 1
            message = answer.field("message")
            text = message if isinstance(message, str) else json.dumps(answer.body)
            if any(value in text for value in self._private) and operation_id not in self.leaks:
                self.leaks.append(operation_id)

    def report_schemas(self, report: Report) -> None:
        """One line per operation and status seen: its answers against the contract's schema."""
        for operation_id in self.contract.bank_operations:
            seen = sorted(status for (op, status) in self.answers if op == operation_id)
            if not seen:
                report.skip(f"schema.{operation_id}", "never answered during this run")
            for status in seen:
                errors, count = self.schema[(operation_id, status)], self.answers[(operation_id, status)]
                good = f"{count} answer(s) match the contract's schema"
                report.expect(f"schema.{operation_id}.{status}", not errors, "; ".join(errors[:4]) or good)
        report.expect(
            "errors.no-party-ids",
            not self.leaks,
            f"error message names the account or party id ({', '.join(self.leaks)})"
            if self.leaks
            else f"no error message of {self.error_answers} names the account or the party id",
        )
