"""What AWS would put on EventBridge for a call the emulator served: moto emits no event for
EC2, ELB, Auto Scaling, RDS, EFS, SSM, ACM or Route 53 calls, so the launcher publishes, for
each successful mutating call, an "AWS API Call via CloudTrail" event shaped as CloudTrail
writes it (the caller's identity and User-Agent, the request parameters, the response
elements), and the services' own change events for the calls that cause them (SSM
"Parameter Store Change", EC2 instance state changes, RDS DB instance events). Events are
put on the region's default bus after a delivery delay (CloudTrail's own lag, best effort at
AWS), through moto's EventBridge, which delivers them to the rules' SQS targets.

Secret values (a parameter's value, a database password) are never written in an event, as
CloudTrail hides them.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs

# The services whose calls are published, as EventBridge names their source.
SOURCES = {
    "ec2": ("aws.ec2", "ec2.amazonaws.com"),
    "elasticloadbalancing": ("aws.elasticloadbalancing", "elasticloadbalancing.amazonaws.com"),
    "autoscaling": ("aws.autoscaling", "autoscaling.amazonaws.com"),
    "rds": ("aws.rds", "rds.amazonaws.com"),
    "elasticfilesystem": ("aws.elasticfilesystem", "elasticfilesystem.amazonaws.com"),
    "ssm": ("aws.ssm", "ssm.amazonaws.com"),
    "acm": ("aws.acm", "acm.amazonaws.com"),
    "route53": ("aws.route53", "route53.amazonaws.com"),
}

_MUTATING = re.compile(
    r"^(Create|Delete|Modify|Put|Update|Authorize|Revoke|Attach|Detach|Register|Deregister|Set|"
    r"Start|Stop|Terminate|Run|Change|Request|Reboot|Add|Remove|Associate|Disassociate|Enable|"
    r"Disable|Replace|Restore|Import|Label|Resume|Suspend|Tag|Untag|Cancel|Complete|Reset|Rotate|"
    r"Send|Apply|Promote|Failover|Resend|Renew)"
)
_SECRET_KEYS = {"value", "masteruserpassword", "password", "secretstring", "newpassword"}
_HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


class Publisher:
    """Publishes the events of the calls the launcher served, `delay` seconds later."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.enabled = True
        self.published = 0
        self.failed = 0
        self._lock = threading.Lock()

    def configure(self, query: str) -> dict[str, Any]:
        q = {k: v[0] for k, v in parse_qs(query).items()}
        with self._lock:
            if "delay" in q:
                self.delay = max(0.0, float(q["delay"]))
            if "enabled" in q:
                self.enabled = q["enabled"] not in ("0", "false", "off")
            return {"delay": self.delay, "enabled": self.enabled, "published": self.published,
                    "failed": self.failed}

    def on_call(self, environ: dict[str, Any], service: str, operation: str, request: bytes,
                response: bytes) -> None:
        """Called after a call answered 2xx: publishes its events if it changed something."""
        if not self.enabled or service not in SOURCES:
            return
        try:
            events = build_events(environ, service, operation, request, response)
        except Exception as exc:  # noqa: BLE001 - an event the emulator cannot shape is skipped
            print(f"cloudtrail_events: {operation}: {exc!r}", file=sys.stderr)
            return
        if not events:
            return
        timer = threading.Timer(self.delay, self._publish, args=(events,))
        timer.daemon = True
        timer.start()

    def _publish(self, events: list[tuple[str, str, dict[str, Any]]]) -> None:
        from moto.events.models import events_backends

        for account, region, entry in events:
            try:
                backend = events_backends[account][region]
                result = backend.put_events([entry])
                ok = all("EventId" in r for r in result)
            except Exception as exc:  # noqa: BLE001 - a target gone (queue deleted): AWS drops it too
                ok = False
                print(f"cloudtrail_events: delivery failed: {exc!r}", file=sys.stderr)
            with self._lock:
                if ok:
                    self.published += 1
                else:
                    self.failed += 1


def is_mutating(service: str, operation: str, method: str) -> bool:
    if " " in operation:  # REST (EFS, Route 53): the method says it
        return method in ("POST", "PUT", "DELETE", "PATCH")
    return bool(_MUTATING.match(operation))


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:] if key else key


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_HIDDEN if k.lower() in _SECRET_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _xml_to_dict(elem: ET.Element) -> Any:
    children = list(elem)
    if not children:
        return (elem.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        tag = _camel(child.tag.split("}")[-1])
        value = _xml_to_dict(child)
        if tag in out:
            if not isinstance(out[tag], list):
                out[tag] = [out[tag]]
            out[tag].append(value)
        else:
            out[tag] = value
    return out


def _parse_body(data: bytes, content_type: str) -> Any:
    if not data:
        return None
    text = data.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return None
    if text.startswith("<"):
        try:
            return _xml_to_dict(ET.fromstring(text))
        except ET.ParseError:
            return None
    if "=" in text and "x-www-form-urlencoded" in content_type:
        return {_camel(k): v[0] for k, v in parse_qs(text).items()}
    return None


def _rest_name(service: str, method: str, path: str) -> str:
    """The operation name of a REST call, as CloudTrail records it."""
    if service == "route53":
        if path.endswith("/rrset") or path.endswith("/rrset/"):
            return "ChangeResourceRecordSets"
        if "/hostedzone" in path:
            return {"POST": "CreateHostedZone", "DELETE": "DeleteHostedZone"}.get(method, "UpdateHostedZoneComment")
        return f"{method}{path}"
    if service == "elasticfilesystem":
        parts = [p for p in path.split("/") if p]
        noun = parts[1] if len(parts) > 1 else ""
        tail = parts[3] if len(parts) > 3 else ""
        names = {
            ("file-systems", ""): {"POST": "CreateFileSystem", "DELETE": "DeleteFileSystem", "PUT": "UpdateFileSystem"},
            ("file-systems", "backup-policy"): {"PUT": "PutBackupPolicy"},
            ("file-systems", "policy"): {"PUT": "PutFileSystemPolicy", "DELETE": "DeleteFileSystemPolicy"},
            ("file-systems", "lifecycle-configuration"): {"PUT": "PutLifecycleConfiguration"},
            ("mount-targets", ""): {"POST": "CreateMountTarget", "DELETE": "DeleteMountTarget"},
            ("mount-targets", "security-groups"): {"PUT": "ModifyMountTargetSecurityGroups"},
            ("access-points", ""): {"POST": "CreateAccessPoint", "DELETE": "DeleteAccessPoint"},
            ("resource-tags", ""): {"POST": "TagResource", "DELETE": "UntagResource"},
        }
        return names.get((noun, tail), {}).get(method, f"{method}{path}")
    return f"{method}{path}"


def build_events(environ: dict[str, Any], service: str, operation: str, request: bytes,
                 response: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    """The (account, region, PutEvents entry) of one served call: none for a read."""
    from moto.iam.models import get_account_id_from

    method = environ.get("REQUEST_METHOD", "GET")
    if not is_mutating(service, operation, method):
        return []
    path = environ.get("PATH_INFO", "")
    name = _rest_name(service, method, path) if " " in operation else operation
    m = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    access_key = m.group(1) if m else "AKIAEXAMPLE"
    region = m.group(2) if m else "us-east-1"
    account = get_account_id_from(access_key)
    ctype = environ.get("CONTENT_TYPE", "")
    params = _parse_body(request, ctype)
    if params is None and environ.get("QUERY_STRING"):
        params = {_camel(k): v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if isinstance(params, dict):
        params.pop("action", None)
        params.pop("version", None)
    if " " in operation:
        params = {"path": path, **(params if isinstance(params, dict) else {"body": params})}
    resp = _parse_body(response, "")
    source, event_source = SOURCES[service]
    now = time.time()
    event_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    user_agent = environ.get("HTTP_USER_AGENT", "") or environ.get("HTTP_X_AMZ_USER_AGENT", "")
    amz_agent = environ.get("HTTP_X_AMZ_USER_AGENT", "")
    if amz_agent and amz_agent not in user_agent:
        user_agent = f"{user_agent} {amz_agent}".strip()
    detail = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": access_key,
            "arn": f"arn:aws:iam::{account}:user/emulated",
            "accountId": account,
            "accessKeyId": access_key,
        },
        "eventTime": event_time,
        "eventSource": event_source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": environ.get("REMOTE_ADDR", "127.0.0.1"),
        "userAgent": user_agent,
        "requestParameters": _redact(params),
        "responseElements": _redact(resp) if len(response) < 65536 else None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    events = [(account, region, {"Source": source, "DetailType": "AWS API Call via CloudTrail",
                                 "Detail": json.dumps(detail), "Resources": [], "Time": now})]
    events.extend(_native(account, region, service, name, params if isinstance(params, dict) else {}, now))
    return events


def _native(account: str, region: str, service: str, name: str, params: dict[str, Any],
            now: float) -> list[tuple[str, str, dict[str, Any]]]:
    """The services' own change events for the calls that cause them."""
    out = []

    def entry(source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        out.append((account, region, {"Source": source, "DetailType": detail_type,
                                      "Detail": json.dumps(detail), "Resources": resources, "Time": now}))

    if service == "ssm" and name in ("PutParameter", "DeleteParameter", "LabelParameterVersion"):
        pname = params.get("Name", "")
        op = {"PutParameter": "Update" if params.get("Overwrite") else "Create",
              "DeleteParameter": "Delete", "LabelParameterVersion": "LabelParameterVersion"}[name]
        arn = f"arn:aws:ssm:{region}:{account}:parameter/{pname.lstrip('/')}"
        entry("aws.ssm", "Parameter Store Change",
              {"operation": op, "name": pname, "type": params.get("Type", ""), "description": ""}, [arn])
    if service == "ec2" and name in ("TerminateInstances", "StopInstances"):
        state = "shutting-down" if name == "TerminateInstances" else "stopping"
        for k, v in params.items():
            if k.startswith("instanceId"):
                entry("aws.ec2", "EC2 Instance State-change Notification", {"instance-id": v, "state": state},
                      [f"arn:aws:ec2:{region}:{account}:instance/{v}"])
    if service == "rds" and name in ("ModifyDBInstance", "RebootDBInstance", "DeleteDBInstance"):
        db = params.get("dBInstanceIdentifier", "")
        entry("aws.rds", "RDS DB Instance Event",
              {"EventCategories": ["configuration change"], "SourceType": "DB_INSTANCE",
               "SourceArn": f"arn:aws:rds:{region}:{account}:db:{db}", "Date": time.strftime(
                   "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
               "Message": f"{name} applied", "SourceIdentifier": db},
              [f"arn:aws:rds:{region}:{account}:db:{db}"])
    return out
