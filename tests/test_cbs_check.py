"""`mojaflow cbs-check`, run as an operator runs it, against the real CBS simulator (everything conforms, the test
account ends as it started) and against deliberately broken CBSs (tests/support/broken_cbs.py: the simulator with
one contract rule broken), each a real HTTP server on 127.0.0.1 on a free port."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mojaflow.cbs_contract import Contract
from tests.simulators._sims import REPO_ROOT, cbs_process
from tests.support.process import ServerProcess, free_port

HOLDER = {"displayName": "Check Account", "firstName": "Check", "lastName": "Account"}
SEED = [
    {
        "accountId": "check-0001",
        "currency": "USD",
        "balance": "250.00",
        "limits": {"maxCreditAmount": "100.00"},
        "holder": HOLDER,
        "parties": [{"idType": "MSISDN", "idValue": "25611100001"}],
    },
    {
        "accountId": "check-blocked",
        "currency": "USD",
        "status": "blocked",
        "balance": "10.00",
        "holder": HOLDER,
        "parties": [{"idType": "MSISDN", "idValue": "25611100002"}],
    },
    {
        "accountId": "check-closed",
        "currency": "USD",
        "status": "closed",
        "balance": "10.00",
        "holder": HOLDER,
        "parties": [{"idType": "MSISDN", "idValue": "25611100003"}],
    },
]
# GET /holds?status=HELD (the sweeper's listing) is checked once the contract has it.
LISTING = "listHolds" in Contract.load().operations
EVERY_OPTION = [
    "--account",
    "check-0001",
    "--msisdn",
    "25611100001",
    "--blocked-account",
    "check-blocked",
    "--closed-account",
    "check-closed",
    "--amount",
    "2.5",
]


def cbs_check(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "cbs-check", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """check name → (verdict, reason), from the PASS / FAIL / SKIP lines."""
    found = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition("  ")
        if verdict in ("PASS", "FAIL", "SKIP"):
            check, _, reason = rest.strip().partition(" ")
            found[check] = (verdict, reason.strip())
    return found


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(SEED))
    return path


@pytest.fixture
def simulator(tmp_path: Path, seed: Path) -> Iterator[str]:
    process, url = cbs_process(tmp_path / "cbs-data", tmp_path / "cbs.log", seed=seed)
    with process.start():
        yield url


def account(url: str, account_id: str) -> dict[str, str]:
    return dict(httpx.get(f"{url}/accounts/{account_id}").json())


def test_the_simulator_keeps_the_whole_contract_and_the_account_ends_as_it_started(simulator: str) -> None:
    result = cbs_check(simulator, *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {verdict for verdict, _ in found.values()} == {"PASS"}, result.stdout  # every option given: no SKIP
    for check in (
        "hold.replay",
        "hold.concurrent",
        "hold.insufficient_funds",
        "hold.refused-key-reusable",
        "hold.commit",
        "hold.release-after-commit",
        "credit.concurrent",
        "credit.limit_exceeded",
        "account.blocked.hold",
        "account.closed.credit",
        "cleanup",
        "account.restored",
        "schema.getHold.200",
        "schema.createHold.409",
        "errors.no-party-ids",
    ):
        assert found[check][0] == "PASS", check
    assert found["hold.commit"][1] == "200 COMMITTED, the account moved by [balance -2.50, held -2.50]"
    if LISTING:
        for check in ("hold.list", "hold.list.after-release", "hold.list.created-before", "hold.list.limit"):
            assert found[check][0] == "PASS", check
        assert found["hold.list"][1] == "the open hold is listed, HELD, with its key"
    # Every operation a bank implements was called and its answers validated.
    for operation in ("health", "getPartyWithSubId", "getCredit", "commitCredit", "releaseCredit", "checkCredit"):
        assert any(check.startswith(f"schema.{operation}.") for check in found), operation
    assert result.stdout.splitlines()[-1].startswith("cbs-check: ")
    assert "0 do not, 0 skipped" in result.stdout.splitlines()[-1]
    # As the CBS itself shows it: a hold and a credit of 2.50 committed, the rest released, nothing left held.
    after = account(simulator, "check-0001")
    assert (after["balance"], after["held"], after["pendingCredits"]) == ("250.00", "0.00", "0.00")
    assert "Check Account" not in result.stdout and "25611100001" not in result.stdout


def test_no_commit_debits_and_credits_nothing(simulator: str) -> None:
    result = cbs_check(simulator, "--account", "check-0001", "--no-commit", "--currency", "USD")
    found = lines(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert found["hold.commit"] == ("SKIP", "--no-commit: nothing debited or credited")
    assert found["credit.commit"][0] == "SKIP"
    assert found["party.msisdn"][0] == "SKIP"
    assert found["account.restored"][0] == "PASS"
    assert all(verdict != "FAIL" for verdict, _ in found.values()), result.stdout


@pytest.fixture
def broken(tmp_path: Path, seed: Path) -> Iterator[Callable[..., str]]:
    started: list[ServerProcess] = []

    def start(*breakages: str) -> str:
        port = free_port()
        argv = [sys.executable, "-m", "tests.support.broken_cbs", "--port", str(port), "--seed", str(seed)]
        argv += ["--data-dir", str(tmp_path / f"broken-{len(started)}"), *breakages]
        url = f"http://127.0.0.1:{port}"
        process = ServerProcess("broken-cbs", argv, health_url=f"{url}/health", cwd=str(REPO_ROOT))
        started.append(process.start())
        return url

    yield start
    for process in started:
        process.stop()


def test_a_cbs_that_is_not_idempotent_on_the_hold_key_fails_and_says_so(broken: Callable[..., str]) -> None:
    url = broken("--hold-not-idempotent")
    result = cbs_check(url, *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 1
    assert found["hold.create"][0] == "PASS"
    assert found["hold.replay"] == (
        "FAIL",
        "expected HTTP 200, got HTTP 201; another holdId: a second hold; money moved again: held +2.50",
    )
    assert found["hold.concurrent"][0] == "FAIL"
    assert "5 distinct holdIds" in found["hold.concurrent"][1]
    assert found["hold.idempotency-conflict"] == (
        "FAIL",
        "expected HTTP 409 idempotency_conflict, got HTTP 201: accepted what the contract refuses",
    )
    assert found["credit.replay"][0] == "PASS"  # only holds are broken
    # Without a committed hold, no credit is committed either: the test account never ends richer.
    assert found["hold.commit"] == ("SKIP", "needs the hold of hold.concurrent")
    assert found["credit.commit"] == ("SKIP", "the hold was not committed, so no credit is either")
    # It released every hold it made, the duplicates too: the account ends as it started.
    assert found["cleanup"][0] == "PASS" and found["account.restored"][0] == "PASS"
    assert account(url, "check-0001")["held"] == "0.00"
    assert "does NOT keep the contract" in result.stdout.splitlines()[-1]


def test_a_refusal_answered_with_a_5xx_is_called_dangerous(broken: Callable[..., str]) -> None:
    result = cbs_check(broken("--refusal-status", "insufficient_funds=500"), *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 1
    verdict, reason = found["hold.insufficient_funds"]
    assert verdict == "FAIL"
    assert reason.startswith("expected HTTP 409 insufficient_funds, got HTTP 500 insufficient_funds: a refusal")
    assert "retried by mojaflow as unavailability" in reason and "dangerous" in reason
    assert found["schema.createHold.500"][0] == "FAIL"
    assert "HTTP 500 is not a documented answer" in found["schema.createHold.500"][1]
    assert [check for check, (verdict, _) in found.items() if verdict == "FAIL"] == [
        "hold.insufficient_funds",
        "schema.createHold.500",
    ]


def test_a_refusal_with_an_undocumented_status_would_be_retried(broken: Callable[..., str]) -> None:
    result = cbs_check(broken("--refusal-status", "hold_not_found=410"), *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 1
    verdict, reason = found["hold.not-found.commit"]
    assert verdict == "FAIL"
    assert reason == (
        "expected HTTP 404 hold_not_found, got HTTP 410 hold_not_found: not a refusal mojaflow knows for this "
        "operation, so it would retry it as unavailability (non-conforming, dangerous)"
    )


def test_a_malformed_body_fails_its_schema_with_the_field_named(broken: Callable[..., str]) -> None:
    result = cbs_check(broken("--malformed-hold"), *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 1
    verdict, reason = found["schema.getHold.200"]
    assert verdict == "FAIL"
    assert "missing required property 'status'" in reason
    assert "amount: breaks type" in reason
    assert found["hold.get"][0] == "FAIL"
    assert found["schema.createHold.201"][0] == "PASS"


@pytest.mark.skipif(not LISTING, reason="the contract has no GET /holds?status=HELD yet")
def test_a_cbs_that_does_not_list_its_open_holds_fails(broken: Callable[..., str]) -> None:
    result = cbs_check(broken("--unlisted-holds"), *EVERY_OPTION)
    found = lines(result)
    assert result.returncode == 1
    assert found["hold.list"] == ("FAIL", "the open hold is not listed: the sweeper would never see it")
    assert found["hold.list.after-release"][0] == "PASS"


SIM_FAULTABLE = ("resolve_party", "hold", "commit_hold", "release_hold", "credit_check", "reserve_credit")
SIM_FAULTABLE += ("commit_credit", "release_credit")
DRILL = ("getParty", "createHold", "commitHold", "releaseHold", "checkCredit", "reserveCredit", "commitCredit")
DRILL += ("releaseCredit",)


def test_the_unavailability_drill_accepts_only_what_mojaflow_retries(simulator: str) -> None:
    """The simulator's own fault switch (`/_sim/faults`) makes it unavailable, or unavailable but answering refusals."""
    for operation in SIM_FAULTABLE:
        httpx.put(f"{simulator}/_sim/faults/{operation}", json={"mode": "down"}).raise_for_status()
    result = cbs_check(simulator, "--account", "check-0001", "--unavailable")
    assert result.returncode == 0, result.stdout
    assert {check: lines(result)[f"unavailable.{check}"] for check in DRILL} == dict.fromkeys(
        DRILL, ("PASS", "HTTP 503 unavailable: mojaflow retries it")
    )

    refusals = {"commit_hold": ("hold_not_found", 404), "hold": ("insufficient_funds", 409)}
    for operation, (code, status) in refusals.items():
        fault = {"mode": "refuse", "code": code, "httpStatus": status}
        httpx.put(f"{simulator}/_sim/faults/{operation}", json=fault).raise_for_status()
    result = cbs_check(simulator, "--account", "check-0001", "--unavailable")
    found = lines(result)
    assert result.returncode == 1
    assert found["unavailable.commitHold"] == (
        "FAIL",
        "HTTP 404 hold_not_found while unavailable: mojaflow takes it as a refusal, final, never retried "
        "(non-conforming, dangerous)",
    )
    assert found["unavailable.createHold"][0] == "FAIL"
    assert found["unavailable.releaseHold"] == ("PASS", "HTTP 503 unavailable: mojaflow retries it")

    httpx.delete(f"{simulator}/_sim/faults").raise_for_status()  # a drill on a working CBS says so, and cleans up
    found = lines(cbs_check(simulator, "--account", "check-0001", "--unavailable"))
    assert found["unavailable.createHold"] == ("FAIL", "HTTP 201: the CBS works; run the drill while it does not")
    assert found["cleanup"][0] == "PASS"
    assert account(simulator, "check-0001")["held"] == "0.00"


def test_an_unreachable_cbs_fails_at_once(tmp_path: Path) -> None:
    result = cbs_check(f"http://127.0.0.1:{free_port()}", "--account", "x")
    assert result.returncode == 1
    assert lines(result)["health"] == ("FAIL", "no answer (ConnectError)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "1.001"], "a positive amount with at most 2 decimals"),
        (["--amount", "0"], "a positive amount with at most 2 decimals"),
        (["--url", "ftp://bank"], "an http:// or https:// URL"),
    ],
)
def test_bad_options_are_refused_before_any_call(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "cbs-check", "--account", "x", "--url", "http://127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
