//! Every metric the daemon exports: name, help and labels, once (docs/metrics.md lists the
//! same, a test keeps the two equal).

/// One metric's name, help and labels.
pub(super) struct Def {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) labels: &'static [&'static str],
}

/// Every metric the daemon serves, in the order of `docs/metrics.md`.
pub(super) const DEFINITIONS: &[Def] = &[
    Def {
        name: "presta_reconcile_runs_total",
        help: "Reconcile runs by stack and result (converged, blocked, pending, error, held).",
        labels: &["stack", "result"],
    },
    Def {
        name: "presta_reconcile_duration_seconds",
        help: "Wall time of one reconcile run of a stack.",
        labels: &["stack"],
    },
    Def {
        name: "presta_drifted_resources",
        help: "Resources whose live state differs from the spec at the last observation, by stack and kind.",
        labels: &["stack", "kind"],
    },
    Def {
        name: "presta_drift_detected_total",
        help: "Differences found between live and desired, by stack, kind and field (`(absent)` for a missing resource, `(undeclared)` for an extra one).",
        labels: &["stack", "kind", "field"],
    },
    Def {
        name: "presta_drift_corrected_total",
        help: "Differences corrected by the reconciler, by stack, kind and field.",
        labels: &["stack", "kind", "field"],
    },
    Def {
        name: "presta_blocked_drifts",
        help: "Resources with drift the reconciler refuses to correct (it would destroy data, or the resource is not the stack's), by stack and kind.",
        labels: &["stack", "kind"],
    },
    Def {
        name: "presta_resources_ready",
        help: "Resources of the stack that exist and match the spec.",
        labels: &["stack"],
    },
    Def {
        name: "presta_resources_managed",
        help: "Resources the stack declares.",
        labels: &["stack"],
    },
    Def {
        name: "presta_last_successful_reconcile_timestamp_seconds",
        help: "Unix time of the last run of the stack that ended converged or blocked.",
        labels: &["stack"],
    },
    Def {
        name: "presta_aws_api_calls_total",
        help: "AWS API calls by service, operation and outcome (success, client_error, server_error, transport_error).",
        labels: &["service", "operation", "outcome"],
    },
    Def {
        name: "presta_aws_api_call_duration_seconds",
        help: "Latency of AWS API calls, retries included.",
        labels: &["service", "operation"],
    },
    Def {
        name: "presta_config_reloads_total",
        help: "Configuration reloads by result (success, error).",
        labels: &["result"],
    },
    Def {
        name: "presta_stacks_configured",
        help: "Stacks in the configuration the daemon runs.",
        labels: &[],
    },
    Def {
        name: "presta_lease_leader",
        help: "1 while this replica holds the lease (serve --lease) or runs without one, 0 on standby.",
        labels: &[],
    },
    Def {
        name: "presta_aws_budget_wait_seconds_total",
        help: "Seconds AWS requests waited for a token of the API budget (the client-side rate per service and region, `--aws-rate`), by service.",
        labels: &["service"],
    },
    Def {
        name: "presta_aws_api_errors_total",
        help: "Failed attempts of AWS calls, retried or not, by service, operation and class (throttled, transient, not_found, conflict, refused, transport).",
        labels: &["service", "operation", "class"],
    },
    Def {
        name: "presta_reconcile_errors_total",
        help: "Resources whose step failed in a reconcile run, by stack, kind, the class of the AWS error (not_found, transient, conflict, refused, transport; `other` for a failure that is not an AWS error) and the AWS operation that failed (empty when not an AWS call).",
        labels: &["stack", "kind", "class", "operation"],
    },
    Def {
        name: "presta_orphaned_resources",
        help: "Resources carrying the ownership tags of a stack that is not in the configuration, by stack and kind (never deleted; `destroy --stack` removes them).",
        labels: &["stack", "kind"],
    },
    Def {
        name: "presta_stack_held",
        help: "1 while the stack's plan exceeds its change budget (spec.policy.maxChangesPerRun) and waits for approval, else 0.",
        labels: &["stack"],
    },
    Def {
        name: "presta_stack_gated",
        help: "1 while a change that rolls the stack's instances (image, bootstrap, AMI, instance type) waits for the stack it follows (spec.promotion), else 0.",
        labels: &["stack"],
    },
    Def {
        name: "presta_instance_refresh_percent",
        help: "Progress of the stack's latest instance refresh (percentage of instances replaced, 0 to 100), by status (InProgress, Successful, Failed, ...); absent when the stack has none in view.",
        labels: &["stack", "status"],
    },
    Def {
        name: "presta_stack_gated_soak_ratio",
        help: "While gated: how long the stack has been gated, as a multiple of its soak time (alert when far above 1), else 0.",
        labels: &["stack"],
    },
    Def {
        name: "presta_stack_health",
        help: "The stack's health verdict as a state set: 1 for the current verdict (healthy, degraded, down, unknown), 0 for the others.",
        labels: &["stack", "verdict"],
    },
    Def {
        name: "presta_targets_healthy",
        help: "Healthy targets in the stack's target group at the last observation.",
        labels: &["stack"],
    },
    Def {
        name: "presta_certificate_expiry_seconds",
        help: "When the stack's own certificate (https.certificate: auto) expires, in seconds since the epoch (as blackbox_exporter's probe_ssl_earliest_cert_expiry): alert on `- time() < 30 * 86400`.",
        labels: &["stack"],
    },
    Def {
        name: "presta_events_mode",
        help: "How drift is found in the region, as a state set (serve --events): 1 for the current mode (events: AWS change events arrive and converged stacks are resynced at --resync-interval; polling: every stack at --interval, the event path being off or broken), 0 for the other.",
        labels: &["region", "mode"],
    },
    Def {
        name: "presta_events_received_total",
        help: "Messages taken from the event queue, by source (aws.ec2, aws.rds, ..., heartbeat, unknown).",
        labels: &["source"],
    },
    Def {
        name: "presta_events_ignored_total",
        help: "Messages that triggered no run, by reason (own_write, no_managed_resource, malformed, other_region, other_account, read_only, other_daemon).",
        labels: &["reason"],
    },
    Def {
        name: "presta_event_heal_seconds",
        help: "From a change's event time (as AWS wrote it in the message) to the run it triggered ending converged.",
        labels: &[],
    },
    Def {
        name: "presta_events_queue_messages",
        help: "Messages waiting in the region's event queue at the last look (approximate, as SQS counts).",
        labels: &["region"],
    },
    Def {
        name: "presta_events_oldest_message_age_seconds",
        help: "Age of the oldest message of the last batch taken from the region's event queue, when it was taken.",
        labels: &["region"],
    },
    Def {
        name: "presta_events_heartbeat_age_seconds",
        help: "Seconds since the daemon's last heartbeat came back through the region's rule and queue (-1 before the first).",
        labels: &["region"],
    },
    Def {
        name: "presta_build_info",
        help: "Always 1; the labels say which build runs.",
        labels: &["version"],
    },
];
