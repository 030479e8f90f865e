#!/usr/bin/env python3
"""Local AWS emulator for presta-reconciler: moto on loopback, with the few
operations the product needs that moto lacks, a per-call request log, and an
optional seed of the network a stack needs.

Used by the Rust harness (crates/presta-emulator) for tests, the demo and the
benchmark; it can also be run by hand:

    python3 launcher.py --port 0 --seed demo --region eu-west-3

Protocol with the parent process:
  * one JSON line on stdout once the server answers:
      {"event": "ready", "endpoint": "http://127.0.0.1:PORT", "port": PORT, "seed": {...}}
  * the emulator stops when stdin reaches end of file (the parent exited or
    closed it), on SIGTERM or SIGINT.

Extra routes (never used by the product, only by tests and the benchmark):
  GET    /_presta/calls  -> {"total": N, "calls": [{"service", "operation", "status"}...]}
  DELETE /_presta/calls  -> resets the log
  PUT    /_presta/command-result?status=Failed&code=2&output=TEXT
                                -> what the next Run Command invocations answer (no query:
                                   Success, exit 0); ListCommandInvocations is added
  GET    /_presta/rds-master-password?db=ID -> the emulated database's master password
                                   (tests only: to check a rotation end to end)
  PUT    /_presta/target-health?state=unhealthy[&target=i-...]
                                -> the target group's registered targets (all, or one) answer
                                   this state in DescribeTargetHealth (healthy: moto's own)
  PUT    /_presta/acm?arn=ARN&not_after=EPOCH -> the certificate's NotAfter (no value: moto's own)
  PUT    /_presta/events?delay=SECONDS[&enabled=0|1]
                                -> the CloudTrail-shaped events of mutating calls (and the
                                   services' own change events) are put on the default bus
                                   SECONDS after the call (default --event-delay, 1 s); enabled=0
                                   stops them (cloudtrail_events.py)
  PUT    /_presta/latency?ms=N -> every AWS call answers N ms later (0: off), to
                                  stop a client at chosen points of a run
  PUT    /_presta/faults?rate=R&seed=S[&services=ec2,rds][&operations=A,B][&kinds=K,L]
                                -> a share R (0..1) of the AWS calls fails, drawn from a
                                   random generator seeded with S, as AWS fails: the
                                   service's own throttling error, 500/503 before the call
                                   is processed, or a 500 *after* it was processed (the
                                   answer is lost: the client must not create twice).
                                   rate=0 turns faults off. Faults counted in the call log
                                   ("fault": kind). kinds= picks among throttle,
                                   unavailable, internal, lost and denied (403 AccessDenied /
                                   UnauthorizedOperation, as IAM refuses a missing permission),
                                   and the network's own: slow (answered slow_ms later,
                                   default 1500), reset (the connection is reset, no answer)
                                   and blackhole (no answer for hold seconds, default 60,
                                   then the connection closes). Without kinds=: throttle,
                                   unavailable, internal and lost.
  (moto's own POST /moto-api/reset wipes all emulated state.)

It binds only to loopback addresses: it refuses any other host.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from typing import Any

import cloudtrail_events

# Dummy credentials: the emulator never talks to AWS, and boto3 (used by the
# seed) must not look for real ones.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.pop("AWS_PROFILE", None)
# ACM issues a requested certificate once its validation records are in a hosted zone (see
# _patch_acm) and this many seconds have passed; moto reads it once, at import. Tests and the
# demo set it through the environment (the Rust side: Builder::acm_validation_wait).
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "0")

try:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server
except ImportError as exc:  # pragma: no cover - reported to the parent
    print(
        json.dumps(
            {
                "event": "error",
                "message": f"moto is not installed ({exc}); install it with: "
                "python3 -m pip install 'moto[server]'",
            }
        ),
        flush=True,
    )
    sys.exit(3)


# --------------------------------------------------------------------------
# Missing behaviour, registered on moto's response classes. moto dispatches an
# action to the method of the same name (snake_case) on the service's response
# class, so adding methods is the supported way to extend it.
# --------------------------------------------------------------------------

REFRESH_SECONDS = float(os.environ.get("PRESTA_EMULATOR_REFRESH_SECONDS", "2"))


def _asg_error(code: str, message: str) -> Exception:
    """An Auto Scaling client error with the AWS error code `code`."""
    from moto.autoscaling.exceptions import AutoscalingClientError

    return type(code, (AutoscalingClientError,), {"code": code})(message)


def _patch_autoscaling() -> None:
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    # asg name -> list of refresh dicts (newest first)
    refreshes: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    lock = threading.Lock()

    def _key(self: Any, name: str) -> tuple[str, str, str]:
        return (self.current_account, self.region, name)

    def _checkpoint(ref: dict[str, Any]) -> tuple[float, float]:
        """The first checkpoint below 100 % and its pause, from the refresh's preferences
        (AWS pauses there for CheckpointDelay seconds); (100, 0) without one."""
        prefs = ref.get("Preferences") or {}
        raw = prefs.get("CheckpointPercentages") or []
        if isinstance(raw, dict):
            raw = list(raw.values())
        points = sorted(float(p) for p in raw if str(p).strip())
        first = next((p for p in points if p < 100), 100.0)
        delay = float(prefs.get("CheckpointDelay") or 3600) if first < 100 else 0.0
        return first, delay

    def _status(ref: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in ref.items() if not k.startswith("_")}
        if out["Status"] in ("Pending", "InProgress"):
            elapsed = time.time() - ref["_started"]
            point, delay = _checkpoint(ref)
            at_point = REFRESH_SECONDS * point / 100
            # As AWS does, a refresh fails when its new instances do not pass the load
            # balancer's health checks (targets forced unhealthy by the test harness).
            forced = [TARGET_HEALTH.get(i) for i in ["*", *ref.get("_instances", [])]]
            if "unhealthy" in forced:
                done = min(elapsed, at_point) if elapsed < at_point + delay else elapsed - delay
                pct = int(100 * min(done / REFRESH_SECONDS, 1)) if REFRESH_SECONDS else 0
                out.update({
                    "Status": "Failed",
                    "PercentageComplete": pct,
                    "EndTime": time.time(),
                    "StatusReason": "Instance refresh failed: new instances did not pass the load balancer's health checks.",
                })
                ref.update({k: out[k] for k in ("Status", "PercentageComplete", "EndTime", "StatusReason")})
            elif elapsed >= REFRESH_SECONDS + delay:
                out["Status"] = "Successful"
                out["PercentageComplete"] = 100
                out["EndTime"] = ref["_started"] + REFRESH_SECONDS + delay
                out["StatusReason"] = "Instance refresh completed (emulated)."
                ref.update(
                    {k: out[k] for k in ("Status", "PercentageComplete", "EndTime", "StatusReason")}
                )
            else:
                out["Status"] = "InProgress"
                if at_point <= elapsed < at_point + delay:
                    out["PercentageComplete"] = int(point)
                    out["StatusReason"] = (
                        f"Waiting for the checkpoint delay: {int(point)}% of the instances replaced."
                    )
                else:
                    done = elapsed if elapsed < at_point else elapsed - delay
                    share = done / REFRESH_SECONDS if REFRESH_SECONDS else 1
                    out["PercentageComplete"] = int(100 * share)
                ref["Status"] = "InProgress"
        return out

    def start_instance_refresh(self: Any) -> Any:
        params = self._get_params()
        name = params.get("AutoScalingGroupName")
        groups = self.autoscaling_backend.autoscaling_groups
        if name not in groups:
            raise _asg_error("ValidationError", f"AutoScalingGroup name not found - {name}")
        with lock:
            existing = refreshes.setdefault(_key(self, name), [])
            for ref in existing:
                if _status(ref)["Status"] in ("Pending", "InProgress"):
                    raise _asg_error(
                        "InstanceRefreshInProgress",
                        "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
                    )
            refresh_id = str(uuid.uuid4())
            ref = {
                "InstanceRefreshId": refresh_id,
                "AutoScalingGroupName": name,
                "Status": "Pending",
                "StatusReason": "Emulated instance refresh.",
                "StartTime": time.time(),
                "PercentageComplete": 0,
                "InstancesToUpdate": len(groups[name].instance_states),
                "Preferences": params.get("Preferences", {}),
                "Strategy": params.get("Strategy", "Rolling"),
                "_started": time.time(),
                "_instances": [st.instance.id for st in groups[name].instance_states],
            }
            if params.get("DesiredConfiguration"):
                ref["DesiredConfiguration"] = params["DesiredConfiguration"]
            existing.insert(0, ref)
        return ActionResult({"InstanceRefreshId": refresh_id})

    def describe_instance_refreshes(self: Any) -> Any:
        params = self._get_params()
        name = params.get("AutoScalingGroupName")
        wanted = set(params.get("InstanceRefreshIds", []) or [])
        with lock:
            items = [
                _status(r)
                for r in refreshes.get(_key(self, name), [])
                if not wanted or r["InstanceRefreshId"] in wanted
            ]
        return ActionResult({"InstanceRefreshes": items})

    def cancel_instance_refresh(self: Any) -> Any:
        params = self._get_params()
        name = params.get("AutoScalingGroupName")
        with lock:
            for ref in refreshes.get(_key(self, name), []):
                if _status(ref)["Status"] in ("Pending", "InProgress"):
                    ref["Status"] = "Cancelled"
                    return ActionResult({"InstanceRefreshId": ref["InstanceRefreshId"]})
        raise _asg_error("ActiveInstanceRefreshNotFound", "No in progress or pending Instance Refresh found")

    original_put_scaling_policy = AutoScalingResponse.put_scaling_policy

    def put_scaling_policy(self: Any) -> Any:
        # moto answers "PolicyArn"; the AWS shape (and so the SDKs) reads "PolicyARN".
        result = original_put_scaling_policy(self)
        body = getattr(result, "result", None)
        if isinstance(body, dict) and "PolicyArn" in body:
            return ActionResult({"PolicyARN": body["PolicyArn"], "Alarms": []})
        return result

    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
    AutoScalingResponse.put_scaling_policy = put_scaling_policy


def _patch_efs() -> None:
    from moto.efs.responses import EFSResponse

    def put_backup_policy(self: Any) -> Any:
        file_system_id = self._get_param("FileSystemId")
        policy = self._get_param("BackupPolicy") or {}
        status = policy.get("Status", "DISABLED")
        if status not in ("ENABLED", "DISABLED"):
            return (
                json.dumps({"ErrorCode": "ValidationException", "Message": f"invalid status {status}"}),
                {"status": 400, "Content-Type": "application/json"},
            )
        _, fss = self.efs_backend.describe_file_systems(file_system_id=file_system_id)
        fss[0]._backup = status == "ENABLED"
        return json.dumps({"BackupPolicy": {"Status": status}}), {"Content-Type": "application/json"}

    def update_file_system(self: Any) -> Any:
        # moto has no UpdateFileSystem (throughput mode and provisioned throughput).
        file_system_id = self.path.rstrip("/").split("/")[-1]
        _, fss = self.efs_backend.describe_file_systems(file_system_id=file_system_id)
        fs = fss[0]
        mode = self._get_param("ThroughputMode")
        if mode:
            if mode not in ("bursting", "provisioned", "elastic"):
                return (
                    json.dumps({"ErrorCode": "ValidationException", "Message": f"invalid throughput mode {mode}"}),
                    {"status": 400, "Content-Type": "application/json"},
                )
            fs.throughput_mode = mode
        mibps = self._get_param("ProvisionedThroughputInMibps")
        if mibps is not None:
            fs.provisioned_throughput_in_mibps = mibps
        return json.dumps(fs.info_json()), {"status": 202, "Content-Type": "application/json"}

    EFSResponse.put_backup_policy = put_backup_policy
    EFSResponse.update_file_system = update_file_system


# What the next Run Command invocations answer (set by tests): status, exit code, output.
COMMAND_RESULT: dict[str, Any] = {}


def _patch_ssm() -> None:
    """ListCommandInvocations (missing from moto): the invocations of a command with their
    plugin output, as `--details` gives them. Invocations answer what PUT
    /_presta/command-result set (default: Success, exit 0, empty output)."""
    from moto.ssm.models import Command, ssm_backends
    from moto.ssm.responses import SimpleSystemManagerResponse
    from moto.core.responses import ActionResult

    original = Command.invocation_response

    def invocation_response(self: Any, instance_id: str, plugin_name: str) -> dict[str, Any]:
        r = original(self, instance_id, plugin_name)
        if COMMAND_RESULT:
            status = COMMAND_RESULT.get("status", "Success")
            r.update({"Status": status, "StatusDetails": status,
                      "ResponseCode": int(COMMAND_RESULT.get("code", 0)),
                      "StandardOutputContent": COMMAND_RESULT.get("output", "")})
        else:
            r["StandardOutputContent"] = f"presta-ctl: {' '.join(self.parameters.get('commands', []))}: ok"
        return r

    def list_command_invocations(self: Any) -> Any:
        command_id = self._get_param("CommandId")
        backend = ssm_backends[self.current_account][self.region]
        commands = [backend.get_command_by_id(command_id)] if command_id else backend._commands
        out = []
        for c in commands:
            for inv in c.invocations:
                out.append({
                    "CommandId": c.command_id, "InstanceId": inv["InstanceId"],
                    "DocumentName": c.document_name, "Status": inv["Status"],
                    "StatusDetails": inv["StatusDetails"], "RequestedDateTime": inv["ExecutionStartDateTime"],
                    "CommandPlugins": [{
                        "Name": inv["PluginName"], "Status": inv["Status"],
                        "StatusDetails": inv["StatusDetails"], "ResponseCode": inv["ResponseCode"],
                        "Output": inv["StandardOutputContent"],
                    }],
                })
        return ActionResult({"CommandInvocations": out})

    # With InstanceIds and no Targets, moto adds every instance of the account (an empty
    # filter matches all): AWS runs on the instances named only.
    original_targets = Command._get_instance_ids_from_targets

    def _get_instance_ids_from_targets(self: Any) -> list[str]:
        return original_targets(self) if self.targets else []

    Command._get_instance_ids_from_targets = _get_instance_ids_from_targets
    Command.invocation_response = invocation_response
    SimpleSystemManagerResponse.list_command_invocations = list_command_invocations


def _patch_rds() -> None:
    """moto gives every DB instance the same DbiResourceId, so a lookup by resource id (the
    `dbi-resource-id` filter, which Terraform's provider uses) matches every instance once a
    region holds two. On AWS it is unique per instance: derive one from the identifier."""
    import hashlib

    from moto.rds.models import DBInstance

    original_init = DBInstance.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        digest = hashlib.sha256(
            f"{self.account_id}/{self.region}/{self.db_instance_identifier}".encode()
        ).hexdigest()
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        self.dbi_resource_id = "db-" + "".join(alphabet[int(digest[i : i + 2], 16) % 32] for i in range(0, 52, 2))

    DBInstance.__init__ = __init__

    # An instance restored in the same minute as the delete of an instance of that identifier
    # that kept its automated backups collides with that backup's name (`rds:<id>-<minute>`):
    # moto refuses the restore with DBSnapshotAlreadyExists. AWS names backups uniquely; keep
    # the existing backup and skip the duplicate.
    original_backup = DBInstance.save_automated_backup

    def save_automated_backup(self: Any) -> None:
        from moto.rds.exceptions import DBSnapshotAlreadyExistsError

        try:
            original_backup(self)
        except DBSnapshotAlreadyExistsError:
            pass

    DBInstance.save_automated_backup = save_automated_backup

    # ListTagsForResource of a DB instance or subnet group that does not exist: AWS answers
    # DBInstanceNotFound / DBSubnetGroupNotFoundFault, moto an empty tag list (which reads as
    # "someone else's resource" to an ownership check).
    from moto.rds.exceptions import DBInstanceNotFoundError, DBSubnetGroupNotFoundError
    from moto.rds.models import RDSBackend

    original_list_tags = RDSBackend.list_tags_for_resource

    def list_tags_for_resource(self: Any, arn: str) -> Any:
        if self._get_resource_for_tagging(arn) is None:
            parts = arn.split(":")
            kind, name = (parts[5], parts[6]) if len(parts) > 6 else ("", "")
            if kind == "db":
                raise DBInstanceNotFoundError(name)
            if kind == "subgrp":
                raise DBSubnetGroupNotFoundError(name)
        return original_list_tags(self, arn)

    RDSBackend.list_tags_for_resource = list_tags_for_resource


def _patch_ec2() -> None:
    """moto copies a launch template's tags once, at creation: CreateTags and DeleteTags on
    the template change the tag store but not what DescribeLaunchTemplates answers. On AWS the
    answer follows the tags; read them from the store."""
    from moto.ec2.models.launch_templates import LaunchTemplate

    def _get(self: Any) -> Any:
        return self.get_tags()

    def _set(self: Any, value: Any) -> None:
        pass

    LaunchTemplate.tags = property(_get, _set)


# Forced target health: target id (or "*") -> state (healthy, unhealthy, initial, draining).
TARGET_HEALTH: dict[str, str] = {}


def _patch_elbv2() -> None:
    """CreateLoadBalancer, CreateTargetGroup and CreateListener are idempotent on AWS ("if you attempt
    to create multiple ... with the same settings, each call succeeds"); moto creates a second
    load balancer and refuses a second target group. Return the existing one, as AWS does. A load
    balancer created without a scheme is internet-facing, as on AWS."""
    from moto.elbv2.models import ELBv2Backend

    original_lb = ELBv2Backend.create_load_balancer
    original_tg = ELBv2Backend.create_target_group

    def create_load_balancer(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        for lb in self.load_balancers.values():
            if lb.name == name:
                return lb
        # AWS's default scheme when the request has none (Terraform sends none for
        # `internal = false`); moto would store an empty one.
        if "scheme" in kwargs and not kwargs["scheme"]:
            kwargs["scheme"] = "internet-facing"
        return original_lb(self, name, *args, **kwargs)

    def create_target_group(self: Any, name: str, **kwargs: Any) -> Any:
        for tg in self.target_groups.values():
            if tg.name == name:
                return tg
        return original_tg(self, name, **kwargs)

    original_listener = ELBv2Backend.create_listener

    def create_listener(self: Any, load_balancer_arn: str, protocol: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        # moto's duplicate check compares the port with listener ARNs and never matches.
        balancer = self.load_balancers.get(load_balancer_arn)
        if balancer is not None:
            for listener in balancer.listeners.values():
                if str(listener.port) == str(port):
                    return listener
        return original_listener(self, load_balancer_arn, protocol, port, *args, **kwargs)

    def _check_certificates(self: Any, certificates: Any) -> None:
        # AWS refuses a listener certificate that does not exist or is not issued; moto takes
        # any ARN.
        from moto.acm.models import acm_backends
        from moto.elbv2.exceptions import ELBClientError

        for cert in certificates or []:
            arn = cert if isinstance(cert, str) else cert.get("CertificateArn") or cert.get("certificate_arn")
            if not arn or ":acm:" not in arn:
                continue
            backend = acm_backends[self.account_id][self.region_name]
            bundle = backend._certificates.get(arn)
            if bundle is None:
                raise ELBClientError("CertificateNotFound", f"Certificate '{arn}' not found")
            bundle.check()
            if bundle.status != "ISSUED":
                raise ELBClientError(
                    "UnsupportedCertificate",
                    f"The certificate '{arn}' must be issued to be used by a listener (it is {bundle.status})",
                )

    def create_listener_checked(self: Any, load_balancer_arn: str, protocol: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        cert = kwargs.get("certificate", args[1] if len(args) > 1 else None)
        _check_certificates(self, [cert] if cert else [])
        return create_listener(self, load_balancer_arn, protocol, port, *args, **kwargs)

    original_modify_listener = ELBv2Backend.modify_listener

    def modify_listener(self: Any, arn: str, *args: Any, **kwargs: Any) -> Any:
        certs = kwargs.get("certificates", args[3] if len(args) > 3 else None)
        _check_certificates(self, certs)
        return original_modify_listener(self, arn, *args, **kwargs)

    original_delete_lb = ELBv2Backend.delete_load_balancer

    def delete_load_balancer(self: Any, arn: str) -> None:
        # moto deletes a load balancer whose deletion protection is on; AWS refuses.
        from moto.elbv2.exceptions import ELBClientError

        balancer = self.load_balancers.get(arn)
        if balancer is not None and balancer.attrs.get("deletion_protection.enabled") == "true":
            raise ELBClientError(
                "OperationNotPermitted",
                f"Load balancer '{arn}' cannot be deleted because deletion protection is enabled",
            )
        return original_delete_lb(self, arn)

    # Target health: moto calls every registered instance healthy. Tests set the state of
    # all targets (or one) through PUT /_presta/target-health, as a failing shop would.
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

    original_health = FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original_health(self, target, ec2_backend)
        forced = TARGET_HEALTH.get(target.get("Id", "")) or TARGET_HEALTH.get("*")
        if forced and status.status == "healthy":
            reason = {"unhealthy": "Target.FailedHealthChecks", "initial": "Elb.RegistrationInProgress"}.get(forced)
            return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, forced, reason,
                                    "set by the test harness")
        return status

    FakeTargetGroup.health_for = health_for
    ELBv2Backend.delete_load_balancer = delete_load_balancer
    ELBv2Backend.create_load_balancer = create_load_balancer
    ELBv2Backend.create_target_group = create_target_group
    ELBv2Backend.create_listener = create_listener_checked
    ELBv2Backend.modify_listener = modify_listener


# Certificates' expiry set by tests (PUT /_presta/acm?arn=ARN&not_after=EPOCH): ARN -> epoch.
ACM_NOT_AFTER: dict[str, float] = {}


def _patch_events() -> None:
    """EventBridge delivers an event to a target without an input transformer as it is; moto
    rebuilds it through eight JSONPath expressions, each compiling a parser (about 100 ms an
    event): a burst of events would take minutes. Same result, without the parsers (and with
    `account`, which AWS delivers and moto's template leaves out)."""
    import copy

    from moto.events import utils

    original = utils.EventTemplateParser.parse
    fields = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")

    def parse(input_template: Any, input_paths_map: Any, event: dict[str, Any]) -> dict[str, Any]:
        if not input_template and not input_paths_map:
            return {k: copy.deepcopy(event[k]) for k in fields if k in event}
        return original(input_template, input_paths_map, event)

    utils.EventTemplateParser.parse = staticmethod(parse)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _patch_acm() -> None:
    """ACM as AWS runs it where moto is laxer. A requested certificate is issued only once its
    DNS validation records (the CNAME name -> value DescribeCertificate gives) are in a hosted
    zone of the account, and not before MOTO_ACM_VALIDATION_WAIT seconds; moto issues it after
    the wait whatever the zones hold. A certificate a listener uses cannot be deleted
    (ResourceInUseException). NotAfter can be set by tests (moto fixes it 365 days ahead); a
    date in the past makes the certificate EXPIRED."""
    import datetime

    from moto import settings as moto_settings
    from moto.acm import models as acm
    from moto.core.exceptions import AWSError
    from moto.core.utils import utcnow

    original_nva = acm.CertBundle._not_valid_after

    def _not_valid_after(self: Any, cert: Any) -> Any:
        forced = ACM_NOT_AFTER.get(getattr(self, "arn", ""))
        if forced is not None:
            return datetime.datetime.fromtimestamp(forced, datetime.timezone.utc).replace(tzinfo=None)
        return original_nva(self, cert)

    def _validated(self: Any) -> bool:
        from moto.route53.models import route53_backends

        options = self.describe()["Certificate"].get("DomainValidationOptions", [])
        wanted = {(_norm(o["ResourceRecord"]["Name"]), _norm(o["ResourceRecord"]["Value"])) for o in options}
        account = self.arn.split(":")[4]
        found = set()
        for zone in route53_backends[account]["aws"].zones.values():
            for rr in zone.rrsets:
                if rr.type == "CNAME":
                    for value in rr.records or []:
                        found.add((_norm(rr.name), _norm(value)))
        return bool(wanted) and wanted <= found

    def check(self: Any) -> None:
        now = utcnow()
        if self._not_valid_after(self._cert) <= now:
            self.status = "EXPIRED"
            return
        if self.type == "AMAZON_ISSUED" and self.status == "PENDING_VALIDATION":
            waited = (now - self.created_at).total_seconds()
            if waited > moto_settings.ACM_VALIDATION_WAIT and _validated(self):
                self.status = "ISSUED"

    original_delete = acm.AWSCertificateManagerBackend.delete_certificate

    def delete_certificate(self: Any, arn: str) -> None:
        from moto.elbv2.models import elbv2_backends

        users = []
        for lb in elbv2_backends[self.account_id][self.region_name].load_balancers.values():
            for listener in lb.listeners.values():
                if arn in [c if isinstance(c, str) else c.get("CertificateArn") for c in (listener.certificates or [])]:
                    users.append(lb.arn)
        if users:
            raise AWSError(
                f"Certificate {arn} in account {self.account_id} is in use.",
                exception_type="ResourceInUseException",
                status=400,
            )
        return original_delete(self, arn)

    acm.CertBundle.check = check
    acm.CertBundle._not_valid_after = _not_valid_after
    acm.AWSCertificateManagerBackend.delete_certificate = delete_certificate


def _patch_route53() -> None:
    """Route 53 change batches as AWS checks them, before applying any change (a batch is
    atomic): a CREATE of a name and type that exists fails, a DELETE must give the record's
    current values (moto deletes whatever the values say)."""
    from moto.route53.exceptions import ResourceRecordAlreadyExists, Route53ClientError
    from moto.route53.models import Route53Backend

    original = Route53Backend.change_resource_record_sets

    def change_resource_record_sets(self: Any, zoneid: str, change_list: list[dict[str, Any]]) -> None:
        zone = self.get_hosted_zone(zoneid)
        for value in change_list:
            rs = value["ResourceRecordSet"]
            name, rtype = _norm(rs["Name"]), rs.get("Type")
            same = [r for r in zone.rrsets if _norm(r.name) == name and r.type == rtype]
            if value["Action"] == "CREATE" and same:
                raise ResourceRecordAlreadyExists(name=name + ".", _type=rtype)
            if value["Action"] == "DELETE" and "SetIdentifier" not in rs:
                if not same:
                    raise Route53ClientError(
                        "InvalidChangeBatch",
                        f"Tried to delete resource record set [name='{name}.', type='{rtype}'] but it was not found",
                    )
                current = same[0]
                given_values = sorted(_norm(r["Value"]) for r in rs.get("ResourceRecords", []))
                current_values = sorted(_norm(v) for v in (current.records or []))
                given_alias = _norm((rs.get("AliasTarget") or {}).get("DNSName", ""))
                current_alias = _norm((current.alias_target or {}).get("DNSName", ""))
                if given_values != current_values or given_alias != current_alias:
                    raise Route53ClientError(
                        "InvalidChangeBatch",
                        f"Tried to delete resource record set [name='{name}.', type='{rtype}'] but the values provided do not match the current values",
                    )
            if value["Action"] == "CREATE":
                # Checked above, exactly; moto's own check takes any record listed after the
                # name for a duplicate. On a record that does not exist UPSERT is CREATE.
                value["Action"] = "UPSERT"
        return original(self, zoneid, change_list)

    Route53Backend.change_resource_record_sets = change_resource_record_sets
    # moto's own DELETE check compares the request with its journal of past changes, byte for
    # byte (a value written with a final dot cannot be deleted without it); the check above
    # compares with the record as it is, as AWS does.
    from moto.route53.models import ChangeList

    ChangeList.has_insert_or_update = lambda self, new_rr_set: True


# --------------------------------------------------------------------------
# Request log: which service and operation every call was, counted at the
# emulator so that every client (our daemon, Terraform, boto3) is counted the
# same way.
# --------------------------------------------------------------------------

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()


def _operation(environ: dict[str, Any], body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.split(".")[-1]
    query = environ.get("QUERY_STRING", "")
    for source in (query, body.decode("utf-8", "replace")):
        m = re.search(r"(?:^|&)Action=([A-Za-z0-9]+)", source)
        if m:
            return m.group(1)
    # REST protocols (EFS): method and path shape.
    path = re.sub(r"/(fs|fsmt|fsap)-[0-9a-f]+", "/{id}", environ.get("PATH_INFO", ""))
    return f"{environ.get('REQUEST_METHOD', 'GET')} {path}"


# Each protocol's error shape, and each service's throttling code.
_THROTTLE = {
    "ec2": ("ec2", "RequestLimitExceeded"),
    "elasticloadbalancing": ("query", "Throttling"),
    "rds": ("query", "Throttling"),
    "autoscaling": ("query", "Throttling"),
    "ssm": ("json", "ThrottlingException"),
    "elasticfilesystem": ("rest", "ThrottlingException"),
    "dynamodb": ("json", "ThrottlingException"),
    "sqs": ("json", "ThrottlingException"),
    "events": ("json", "ThrottlingException"),
    "cloudtrail": ("json", "ThrottlingException"),
    "acm": ("json", "ThrottlingException"),
    "sts": ("query", "Throttling"),
    "route53": ("query", "Throttling"),
}


def _agent(environ: dict) -> str:
    """Who called: `terraform`, the SDK app name (`app/<name>` in the User-Agent, which
    tells the reconciler's replicas apart), else `other`."""
    ua = environ.get("HTTP_USER_AGENT", "") + " " + environ.get("HTTP_X_AMZ_USER_AGENT", "")
    if "Terraform" in ua:
        return "terraform"
    for part in ua.split():
        if part.startswith("app/"):
            return part[4:]
    return "other"


def _error(service: str, status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An error answer in the protocol of `service`."""
    shape = _THROTTLE.get(service, ("query", ""))[0]
    request_id = str(uuid.uuid4())
    if shape == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        ctype = "text/xml"
    elif shape == "query":
        body = (f"<ErrorResponse><Error><Type>{'Receiver' if status >= 500 else 'Sender'}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        ctype = "text/xml"
    else:
        body = json.dumps({"__type": code, "message": message, "ErrorCode": code, "Message": message})
        ctype = "application/x-amz-json-1.1" if shape == "json" else "application/json"
    reasons = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    data = body.encode()
    headers = [("Content-Type", ctype), ("Content-Length", str(len(data))), ("x-amzn-RequestId", request_id),
               ("x-amzn-ErrorType", code)]
    return f"{status} {reasons.get(status, 'Error')}", headers, data


KINDS = {"throttle", "unavailable", "internal", "lost", "denied", "slow", "reset", "blackhole"}


class Faults:
    """Seeded fault injection: which calls fail, and how."""

    def __init__(self) -> None:
        import random

        self._lock = threading.Lock()
        self._random = random.Random(0)
        self.rate = 0.0
        self.services: set[str] = set()
        self.operations: set[str] = set()
        self.kinds: list[str] = []
        self.slow_ms = 1500.0
        self.hold_seconds = 60.0

    def configure(self, query: str) -> dict[str, Any]:
        import random
        from urllib.parse import parse_qs

        q = {k: v[0] for k, v in parse_qs(query).items()}
        with self._lock:
            self.rate = max(0.0, min(1.0, float(q.get("rate", "0"))))
            self._random = random.Random(int(q.get("seed", "0")))
            self.services = {x for x in q.get("services", "").split(",") if x}
            self.operations = {x for x in q.get("operations", "").split(",") if x}
            self.kinds = [x for x in q.get("kinds", "").split(",") if x]
            unknown = [k for k in self.kinds if k not in KINDS]
            if unknown:
                self.rate = 0.0
                return {"error": f"unknown fault kinds {unknown}: use {sorted(KINDS)}"}
            self.slow_ms = float(q.get("slow_ms", "1500"))
            self.hold_seconds = float(q.get("hold", "60"))
            return {"rate": self.rate, "services": sorted(self.services), "operations": sorted(self.operations),
                    "kinds": self.kinds, "slow_ms": self.slow_ms, "hold": self.hold_seconds}

    def draw(self, service: str, operation: str) -> str | None:
        """The fault for this call, if any (one of KINDS)."""
        with self._lock:
            if self.rate <= 0:
                return None
            if self.services and service not in self.services:
                return None
            if self.operations and operation not in self.operations:
                return None
            if self._random.random() >= self.rate:
                return None
            return self._random.choice(self.kinds or ["throttle", "throttle", "unavailable", "internal", "lost"])


class Instrumented:
    def __init__(self, app: Any, log: CallLog, publisher: Any) -> None:
        self.app = app
        self.log = log
        self.latency_ms = 0.0
        self.faults = Faults()
        self.publisher = publisher

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/_presta/calls":
            if environ.get("REQUEST_METHOD") == "DELETE":
                self.log.reset()
                payload: dict[str, Any] = {"reset": True}
            else:
                calls = self.log.snapshot()
                payload = {"total": len(calls), "calls": calls}
            data = json.dumps(payload).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/faults":
            data = json.dumps(self.faults.configure(environ.get("QUERY_STRING", ""))).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/rds-master-password":
            # Test-only: what the emulated database would accept, to check a rotation.
            from urllib.parse import parse_qs
            from moto.rds.models import rds_backends

            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            found = None
            try:
                backend = rds_backends[q.get("account", "123456789012")][q.get("region", "eu-west-3")]
                db = backend.databases.get(q.get("db", ""))
                found = getattr(db, "_master_user_password", None) if db is not None else None
            except Exception as e:  # noqa: BLE001 - a test helper reports, never crashes
                found = None
                print(f"rds-master-password: {e!r}", file=sys.stderr)
            data = json.dumps({"password": found}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/command-result":
            from urllib.parse import parse_qs

            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            COMMAND_RESULT.clear()
            COMMAND_RESULT.update(q)
            data = json.dumps({"command_result": COMMAND_RESULT}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/target-health":
            from urllib.parse import parse_qs

            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            target = q.get("target", "*")
            state = q.get("state", "")
            if state in ("", "healthy") and target == "*":
                TARGET_HEALTH.clear()  # every target back to moto's own answer
            elif state in ("", "healthy"):
                TARGET_HEALTH.pop(target, None)
            else:
                TARGET_HEALTH[target] = state
            data = json.dumps({"forced": TARGET_HEALTH}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/acm":
            # Test-only: a certificate's expiry (NotAfter), as time would bring it.
            from urllib.parse import parse_qs

            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            if q.get("not_after"):
                ACM_NOT_AFTER[q.get("arn", "")] = float(q["not_after"])
            else:
                ACM_NOT_AFTER.pop(q.get("arn", ""), None)
            data = json.dumps({"not_after": ACM_NOT_AFTER}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/events":
            data = json.dumps(self.publisher.configure(environ.get("QUERY_STRING", ""))).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == "/_presta/latency":
            m = re.search(r"(?:^|&)ms=([0-9.]+)", environ.get("QUERY_STRING", ""))
            self.latency_ms = float(m.group(1)) if m else 0.0
            data = json.dumps({"latency_ms": self.latency_ms}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path.startswith("/moto-api") or path == "/_presta/health":
            if path == "/_presta/health":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok"]
            return self.app(environ, start_response)

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = m.group(1) if m else "unknown"
        operation = _operation(environ, body)
        status_holder: dict[str, str] = {}

        def _start(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_holder["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)
        fault = self.faults.draw(service, operation)
        agent = _agent(environ)
        if fault in ("throttle", "unavailable", "internal", "denied"):
            # Refused before it is processed: nothing happened at AWS.
            if fault == "throttle":
                code = _THROTTLE.get(service, ("query", "Throttling"))[1]
                status = 400
            elif fault == "denied":
                # What IAM answers a caller without the permission.
                code = "UnauthorizedOperation" if service == "ec2" else (
                    "AccessDeniedException" if _THROTTLE.get(service, ("query",))[0] in ("json", "rest") else "AccessDenied")
                status = 403
            elif fault == "unavailable":
                code, status = "ServiceUnavailable", 503
            else:
                code, status = "InternalFailure", 500
            line, headers, data = _error(service, status, code, "injected fault")
            start_response(line, headers)
            self.log.add({"service": service, "operation": operation, "status": status, "ms": 0.0,
                          "agent": agent, "fault": fault})
            return [data]
        if fault in ("reset", "blackhole"):
            # The network fails: no answer at all. A reset closes the connection at once (an
            # RST); a black hole holds it unanswered, then closes it. Nothing reached AWS.
            self.log.add({"service": service, "operation": operation, "status": 0, "ms": 0.0,
                          "agent": agent, "fault": fault})
            if fault == "blackhole":
                time.sleep(self.faults.hold_seconds)
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                import socket
                import struct

                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                except OSError:
                    pass
            # Writing to the closed socket makes the server drop the connection quietly.
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return [b""]
        if fault == "slow":
            time.sleep(self.faults.slow_ms / 1000)
        started = time.perf_counter()
        if fault == "lost":
            # Processed, but the answer is lost on the way back: the client sees a 500.
            def _discard(status: str, headers: Any, exc_info: Any = None) -> Any:
                return lambda _data: None

            for _chunk in self.app(environ, _discard):
                pass
            line, headers, data = _error(service, 500, "InternalFailure", "injected fault after processing")
            start_response(line, headers)
            self.log.add({"service": service, "operation": operation, "status": 500,
                          "ms": round((time.perf_counter() - started) * 1000, 2), "agent": agent, "fault": fault})
            return [data]
        result = self.app(environ, _start)
        if service in cloudtrail_events.SOURCES and cloudtrail_events.is_mutating(
                service, operation, environ.get("REQUEST_METHOD", "GET")):
            chunks = list(result)
            if hasattr(result, "close"):
                result.close()
            result = chunks
            if 200 <= int(status_holder.get("status", "0")) < 300:
                self.publisher.on_call(environ, service, operation, body, b"".join(chunks))
        entry = {
            "service": service,
            "operation": operation,
            "status": int(status_holder.get("status", "0")),
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "agent": agent,
        }
        if fault == "slow":
            entry["fault"] = "slow"
        self.log.add(entry)
        return result


# --------------------------------------------------------------------------
# Seed: the network and instance profile a stack expects to exist.
# --------------------------------------------------------------------------


def seed(endpoint: str, region: str, name: str) -> dict[str, Any]:
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    iam = boto3.client("iam", region_name=region, endpoint_url=endpoint)
    prefix = f"presta-{name}"

    def tags(resource: str, extra: str) -> list[dict[str, Any]]:
        return [{"ResourceType": resource, "Tags": [{"Key": "Name", "Value": f"{prefix}-{extra}"}]}]

    existing = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{prefix}-vpc"]}])["Vpcs"]
    if existing:
        vpc_id = existing[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock="10.40.0.0/16", TagSpecifications=tags("vpc", "vpc"))["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        igw = ec2.create_internet_gateway(TagSpecifications=tags("internet-gateway", "igw"))
        ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGateway"]["InternetGatewayId"], VpcId=vpc_id)

    subnets: dict[str, str] = {}
    layout = [("public-a", "10.40.0.0/24", "a"), ("public-b", "10.40.1.0/24", "b"),
              ("private-a", "10.40.10.0/24", "a"), ("private-b", "10.40.11.0/24", "b")]
    for suffix, cidr, az in layout:
        found = ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "tag:Name", "Values": [f"{prefix}-{suffix}"]}]
        )["Subnets"]
        if found:
            subnets[suffix] = found[0]["SubnetId"]
        else:
            subnets[suffix] = ec2.create_subnet(
                VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{region}{az}", TagSpecifications=tags("subnet", suffix)
            )["Subnet"]["SubnetId"]

    profile = f"{prefix}-instance"
    try:
        iam.get_instance_profile(InstanceProfileName=profile)
    except iam.exceptions.NoSuchEntityException:
        assume = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        )
        iam.create_role(RoleName=profile, AssumeRolePolicyDocument=assume)
        iam.create_instance_profile(InstanceProfileName=profile)
        iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=profile)

    # A public hosted zone for the shops' names (`<name>.example.com`), and a certificate for
    # `shop.<name>.example.com` validated through it (issued: the HTTPS examples that give an
    # ARN use it).
    route53 = boto3.client("route53", region_name=region, endpoint_url=endpoint)
    zone_name = f"{name}.example.com"
    zones = [z for z in route53.list_hosted_zones_by_name(DNSName=zone_name)["HostedZones"] if z["Name"] == zone_name + "."]
    zone_id = (zones[0]["Id"] if zones else route53.create_hosted_zone(
        Name=zone_name, CallerReference=f"presta-seed-{name}")["HostedZone"]["Id"]).split("/")[-1]
    acm = boto3.client("acm", region_name=region, endpoint_url=endpoint)
    domain = f"shop.{name}.example.com"
    certs = [c for c in acm.list_certificates(CertificateStatuses=["PENDING_VALIDATION", "ISSUED"])["CertificateSummaryList"]
             if c["DomainName"] == domain]
    cert_arn = certs[0]["CertificateArn"] if certs else acm.request_certificate(
        DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    for option in acm.describe_certificate(CertificateArn=cert_arn)["Certificate"].get("DomainValidationOptions", []):
        record = option["ResourceRecord"]
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
            "Action": "UPSERT",
            "ResourceRecordSet": {"Name": record["Name"], "Type": "CNAME", "TTL": 300,
                                  "ResourceRecords": [{"Value": record["Value"]}]}}]})

    # A trail that logs management events, as an account that uses `serve --events` has (the
    # daemon checks for one, never creates one).
    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint)
    cloudtrail = boto3.client("cloudtrail", region_name=region, endpoint_url=endpoint)
    trail = f"{prefix}-trail"
    if not any(t["Name"] == trail for t in cloudtrail.describe_trails()["trailList"]):
        bucket = f"{prefix}-trail-logs"
        try:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        cloudtrail.create_trail(Name=trail, S3BucketName=bucket)
        cloudtrail.start_logging(Name=trail)

    return {
        "name": name,
        "region": region,
        "vpc_id": vpc_id,
        "subnets": subnets,
        "instance_profile": profile,
        "certificate_arn": cert_arn,
        "domain": domain,
        "hosted_zone": zone_name,
        "hosted_zone_id": zone_id,
    }


# --------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--seed", action="append", default=[], metavar="NAME",
                        help="seed the network presta-NAME-* (repeatable)")
    parser.add_argument("--region", default="eu-west-3", help="region of the seeded network")
    parser.add_argument("--event-delay", type=float, default=1.0,
                        help="seconds between a mutating call and its CloudTrail-shaped event on the bus (default 1)")
    parser.add_argument("--no-stdin-watch", action="store_true",
                        help="keep running when stdin closes (for running by hand in the background)")
    args = parser.parse_args()

    if not _is_loopback(args.host):
        print(json.dumps({"event": "error", "message": f"refusing to bind {args.host}: loopback only"}), flush=True)
        return 2

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _patch_autoscaling()
    _patch_efs()
    _patch_rds()
    _patch_ec2()
    _patch_elbv2()
    _patch_ssm()
    _patch_acm()
    _patch_route53()
    _patch_events()

    log = CallLog()
    app = Instrumented(DomainDispatcherApplication(create_backend_app), log,
                       cloudtrail_events.Publisher(args.event_delay))
    server = make_server(args.host, args.port, app, threaded=True)
    port = server.server_address[1]
    endpoint = f"http://{args.host}:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    try:
        seeds = [seed(endpoint, args.region, name) for name in args.seed]
    except Exception as exc:  # noqa: BLE001 - reported to the parent, then exit
        print(json.dumps({"event": "error", "message": f"seeding failed: {exc!r}"}), flush=True)
        server.shutdown()
        return 4
    log.reset()  # the seed's own calls are not the product's

    print(json.dumps({"event": "ready", "endpoint": endpoint, "port": port, "seed": seeds}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not args.no_stdin_watch:
        def _watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except Exception:  # noqa: BLE001
                pass
            stop.set()

        threading.Thread(target=_watch_stdin, daemon=True).start()
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
