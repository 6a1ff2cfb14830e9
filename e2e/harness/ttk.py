"""The Testing Toolkit's working directory, and its inbound test template.

TTK reads `spec_files/`, `secrets/` and `examples/` from its working directory and writes there too, so each run
gets a fresh copy of the installed package's, with our settings merged into its own and our rules
(e2e/harness/ttk_rules.py) as its only active rules.

    prepare_ttk(package_dir, run_dir, Ports(...), jws=keys_or_None)
    result = await run_inbound(http, admin_url, inbound_template(payee_msisdn, "25", "COMMITTED"))
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from e2e.harness.jws import JwsKeys
from e2e.harness.ttk_rules import callback_rules, validation_rules

__all__ = ["TTK_FSP", "TtkPorts", "inbound_template", "prepare_ttk", "run_inbound"]

TTK_FSP = "testingtoolkitdfsp"
OUR_FSP = "pm4mldfsp"


@dataclass(frozen=True)
class TtkPorts:
    api: int  # the FSPIOP API: the switch and the peer DFSP
    to_sdk: str  # where its callbacks and requests for our DFSP go (the switch front's TTK side)
    mcm: int | None = None  # the Connection Manager stand-in (JWS only)


def prepare_ttk(package: Path, run: Path, ports: TtkPorts, jws: JwsKeys | None = None) -> None:
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    for folder in ("spec_files", "secrets", "examples"):
        shutil.copytree(package / folder, run / folder)
    spec = run / "spec_files"

    system = _load(spec / "system_config.json")
    system.update(
        API_PORT=ports.api,
        HOSTING_ENABLED=False,
        INBOUND_MUTUAL_TLS_ENABLED=False,
        OUTBOUND_MUTUAL_TLS_ENABLED=False,
        KEYCLOAK={"ENABLED": False},
        OAUTH={**system.get("OAUTH", {}), "AUTH_ENABLED": False},
        SERVER_LOGS={"ENABLED": False, "ADAPTER": {"API_URL": ""}},
        CONNECTION_MANAGER={"ENABLED": False},
    )
    user = _load(spec / "user_config.json")
    user.update(
        CALLBACK_ENDPOINT=ports.to_sdk,
        HUB_ONLY_MODE=False,
        ENDPOINTS_DFSP_WISE={"dfsps": {OUR_FSP: {"defaultEndpoint": ports.to_sdk, "endpoints": []}}},
        DEFAULT_USER_FSPID=OUR_FSP,
        FSPID=TTK_FSP,
        SEND_CALLBACK_ENABLE=True,
        # TTK checks each prepare against the quote it gave (as a real payee FSP does)
        TRANSFERS_VALIDATION_WITH_PREVIOUS_QUOTES=True,
        TRANSFERS_VALIDATION_ILP_PACKET=True,
        TRANSFERS_VALIDATION_CONDITION=True,
        ILP_SECRET=f"e2e-{uuid.uuid4().hex}",
        VALIDATE_INBOUND_JWS=jws is not None,
        VALIDATE_INBOUND_PUT_PARTIES_JWS=jws is not None,
        JWS_SIGN=jws is not None,
        JWS_SIGN_PUT_PARTIES=jws is not None,
        CLIENT_MUTUAL_TLS_ENABLED=False,
        CLIENT_TLS_CREDS=[],  # its samples carry private keys of their own: nothing to load
        LOG_SERVER_UI_URL="",
        CALLBACK_TIMEOUT=10000,
        DEFAULT_REQUEST_TIMEOUT=5000,
    )
    if jws is not None:  # TTK 18.19.2 signs with secrets/privatekey.pem and reads its peers' certs from an MCM
        assert ports.mcm is not None
        shutil.copy(jws.switch_key, run / "secrets" / "privatekey.pem")
        shutil.copy(jws.switch_cert, run / "secrets" / "publickey.cer")
        system["CONNECTION_MANAGER"] = {"ENABLED": True, "API_URL": f"http://127.0.0.1:{ports.mcm}",
                                        "AUTH_ENABLED": False, "HUB_USERNAME": "", "HUB_PASSWORD": ""}  # fmt: skip
    _dump(system, spec / "system_config.json")
    _dump(user, spec / "user_config.json")
    for kind, rules in (("rules_callback", callback_rules()), ("rules_validation", validation_rules())):
        _dump(rules, spec / kind / "mojaflow-e2e.json")
        _dump({"activeRulesFile": "mojaflow-e2e.json"}, spec / kind / "config.json")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _dump(value: object, path: Path) -> None:
    path.write_text(json.dumps(value, indent=2))


# -- the inbound template: TTK as the payer's FSP and the switch, our SDK (and mojaflow) as the payee ------------


def _request(request_id: int, description: str, method: str, operation: str, path: str, **rest: Any) -> dict[str, Any]:
    resource = operation.split("/")[1]
    version = "1.1" if method == "patch" else "1.0"
    headers = {
        "Accept": f"application/vnd.interoperability.{resource}+json;version=1.0",
        "Content-Type": f"application/vnd.interoperability.{resource}+json;version={version}",
        "Date": "{$function.generic.curDate}",
        "FSPIOP-Source": "switch" if method == "patch" else "{$inputs.fromFspId}",
        "FSPIOP-Destination": "{$inputs.toFspId}",
    }
    if method == "patch":
        del headers["Accept"]
    api = {"minorVersion": 1 if method == "patch" else 0, "majorVersion": 1, "type": "fspiop", "asynchronous": True}
    return {"id": request_id, "description": description, "apiVersion": api, "operationPath": operation,
            "path": path, "method": method, "headers": headers, **rest}  # fmt: skip


def inbound_template(payee_msisdn: str, amount: str, final_state: str = "COMMITTED") -> dict[str, Any]:
    """GET /parties → POST /quotes → POST /transfers → PATCH /transfers/{id} with `final_state`, each checked."""
    quote = {
        "quoteId": "{$function.generic.generateUUID}",
        "transactionId": "{$function.generic.generateUUID}",
        "payer": {
            "partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "{$inputs.fromIdValue}",
                            "fspId": "{$inputs.fromFspId}"},
            "name": "Remote Payer",
            "personalInfo": {"complexName": {"firstName": "Remote", "lastName": "Payer"}, "dateOfBirth": "1970-01-01"},
        },
        "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": "{$inputs.toIdValue}",
                                  "fspId": "{$inputs.toFspId}"}},
        "amountType": "SEND",
        "amount": {"amount": "{$inputs.amount}", "currency": "{$inputs.currency}"},
        "transactionType": {"scenario": "TRANSFER", "initiator": "PAYER", "initiatorType": "CONSUMER"},
        "note": "e2e inbound",
    }  # fmt: skip
    prepare = {
        "transferId": "{$prev.2.request.body.transactionId}",
        "payerFsp": "{$inputs.fromFspId}",
        "payeeFsp": "{$inputs.toFspId}",
        "amount": {"amount": "{$prev.2.callback.body.transferAmount.amount}", "currency": "{$inputs.currency}"},
        "expiration": "{$prev.2.callback.body.expiration}",
        "ilpPacket": "{$prev.2.callback.body.ilpPacket}",
        "condition": "{$prev.2.callback.body.condition}",
    }
    transfer_path = "/transfers/{$prev.2.request.body.transactionId}"

    def expect(*lines: str) -> dict[str, Any]:
        return {"assertions": [{"id": 1, "description": "as expected", "exec": list(lines)}]}

    requests = [
        _request(1, "GET /parties", "get", "/parties/{Type}/{ID}", "/parties/MSISDN/{$inputs.toIdValue}",
                 params={"Type": "MSISDN", "ID": "{$inputs.toIdValue}"},
                 tests=expect("expect(response.status).to.equal(202)",
                              "expect(callback.body.party.partyIdInfo.fspId).to.equal('{$inputs.toFspId}')")),
        _request(2, "POST /quotes", "post", "/quotes", "/quotes", body=quote,
                 tests=expect("expect(response.status).to.equal(202)",
                              "expect(callback.body.transferAmount.amount).to.equal('{$inputs.amount}')")),
        _request(3, "POST /transfers", "post", "/transfers", "/transfers", body=prepare,
                 tests=expect("expect(response.status).to.equal(202)",
                              "expect(callback.body.transferState).to.equal('RESERVED')",
                              "expect(callback.body).to.have.property('fulfilment')")),
        _request(4, f"PATCH /transfers/{{ID}} {final_state}", "patch", "/transfers/{ID}", transfer_path,
                 params={"ID": "{$prev.2.request.body.transactionId}"},
                 body={"completedTimestamp": "{$function.generic.curDateISO}", "transferState": final_state},
                 tests=expect("expect(response.status).to.equal(200)")),
    ]  # fmt: skip
    inputs = {"fromFspId": TTK_FSP, "toFspId": OUR_FSP, "fromIdValue": "25611111111", "toIdValue": payee_msisdn,
              "currency": "USD", "amount": amount}  # fmt: skip
    return {"name": "mojaflow-e2e-inbound", "inputValues": inputs,
            "test_cases": [{"id": 1, "name": "inbound P2P", "requests": requests}]}  # fmt: skip


@dataclass
class InboundRun:
    transfer_id: str
    failed_assertions: list[str]


async def run_inbound(http: httpx.AsyncClient, admin_url: str, template: dict[str, Any]) -> InboundRun:
    """Run the template through TTK's REST API (it waits for every callback); the transfer id TTK made."""
    response = await http.post(f"{admin_url}/api/outbound/template/e2e-{uuid.uuid4().hex[:12]}?sync=true",
                               json=template, timeout=120)  # fmt: skip
    assert response.status_code == 200, response.text[:500]
    steps = response.json()["test_cases"][0]["requests"]
    failed = [
        f"{step['request']['description']}: {assertion.get('resultStatus')}"
        for step in steps
        for assertion in step["request"]["tests"]["assertions"]
        if (assertion.get("resultStatus") or {}).get("status") != "SUCCESS"
    ]
    transfer_id = str(steps[1]["request"]["body"]["transactionId"])
    return InboundRun(transfer_id, failed)
