//! AWS errors as data: the operation, AWS's error code (kept verbatim, e.g.
//! `InvalidGroup.NotFound`, `RequestLimitExceeded`) and a class that decides what to do next.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure, for the caller's next step. Serialised (reports, the `class` label
/// of the error metrics) as `not_found`, `transient`, `conflict`, `refused`, `transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The resource does not exist (absent, not an error, for observation).
    NotFound,
    /// Throttled or a temporary AWS condition: retry later.
    Transient,
    /// The resource exists already or is busy (another writer, an operation in progress).
    Conflict,
    /// AWS refused the request as invalid, or access was denied: a person must act.
    Refused,
    /// No answer from AWS (timeout, connection).
    Transport,
}

/// A failed step as the report, the API and the metrics carry it: what class of failure,
/// which AWS operation, on which resource, and AWS's words. Made from an [`AwsError`] where the
/// call failed; never a secret (AWS's messages name resources, not values).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepError {
    pub class: ErrorClass,
    /// The AWS operation, as the SDK names it (`CreateSecurityGroup`).
    pub operation: String,
    /// The resource the step was about (its deterministic name, or its id when known).
    pub resource: String,
    /// AWS's error code, verbatim, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl StepError {
    pub fn new(err: &AwsError, resource: impl Into<String>) -> StepError {
        StepError {
            class: err.class,
            operation: err.operation.to_string(),
            resource: resource.into(),
            code: err.code.clone(),
            message: err.message.clone(),
        }
    }
}

/// A failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub operation: &'static str,
    /// AWS's error code, verbatim.
    pub code: Option<String>,
    pub message: String,
    pub class: ErrorClass,
}

const NOT_FOUND_CODES: &[&str] = &[
    "InvalidGroup.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.NotFound",
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "RuleNotFound",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBSubnetGroupNotFoundFault",
    "FileSystemNotFound",
    "MountTargetNotFound",
    "PolicyNotFound",
    "LifecycleConfigurationNotFound",
    "ParameterNotFound",
    // SSM's tagging calls on a parameter that is gone.
    "InvalidResourceId",
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    // ACM: a certificate that is gone; Route 53: a hosted zone that is gone.
    "ResourceNotFoundException",
    "NoSuchHostedZone",
    // SQS: a queue that is gone (JSON and query protocols).
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The codes with which each service says it throttles.
pub(crate) const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

const TRANSIENT_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "ThrottledException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "IncorrectFileSystemLifeCycleState",
    "ResourceContention",
    // A dependency is still going away (instances leaving a security group, mount targets
    // being deleted): retry once it has.
    "DependencyViolation",
    "FileSystemInUse",
    "ResourceInUse",
    // ACM: a certificate a listener still uses (moved by the same run, seen a moment later).
    "ResourceInUseException",
    // Route 53: another change of the zone is still being applied.
    "PriorRequestNotComplete",
    "ScalingActivityInProgress",
];

const CONFLICT_CODES: &[&str] = &[
    "InvalidGroup.Duplicate",
    "InvalidPermission.Duplicate",
    "DuplicateLoadBalancerName",
    "DuplicateTargetGroupName",
    "DuplicateListener",
    "DBInstanceAlreadyExists",
    "DBSubnetGroupAlreadyExists",
    "FileSystemAlreadyExists",
    "MountTargetConflict",
    "ParameterAlreadyExists",
    "AlreadyExists",
    "InvalidLaunchTemplateName.AlreadyExistsException",
    "InstanceRefreshInProgress",
    "InvalidDBInstanceState",
    "IncorrectState",
];

impl ErrorClass {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "not_found",
            ErrorClass::Transient => "transient",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Refused => "refused",
            ErrorClass::Transport => "transport",
        }
    }
}

impl AwsError {
    /// Classifies an SDK error of `operation`.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsError {
                operation,
                code: None,
                message: format!("no answer from AWS ({})", display_chain(&err)),
                class: ErrorClass::Transport,
            },
            _ => {
                let code = err.code().map(str::to_string);
                let message = err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| display_chain(&err));
                let class = classify(code.as_deref(), raw_status(&err));
                AwsError {
                    operation,
                    code,
                    message,
                    class,
                }
            }
        }
    }

    /// Whether the resource was absent.
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// Whether AWS's code is `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// A resource the reconciler looked for and did not find (not an AWS answer).
    pub fn not_found(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            operation,
            code: None,
            message: message.into(),
            class: ErrorClass::NotFound,
        }
    }

    /// An error the reconciler detects itself (an answer it cannot use).
    pub fn unexpected(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            operation,
            code: None,
            message: message.into(),
            class: ErrorClass::Refused,
        }
    }
}

/// The HTTP status of AWS's answer, from the SDK's own response.
fn raw_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        // An answer that could not be read (cut short, not AWS's format): a server-side
        // failure to retry, whatever status it claimed.
        SdkError::ResponseError(e) => Some(e.raw().status().as_u16().max(500)),
        _ => None,
    }
}

pub(crate) fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    match code {
        Some(c)
            if NOT_FOUND_CODES.contains(&c)
                || c.ends_with(".NotFound")
                || c.ends_with("NotFoundFault") =>
        {
            ErrorClass::NotFound
        }
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Transient,
        Some(c)
            if CONFLICT_CODES.contains(&c)
                || c.ends_with(".Duplicate")
                || c.ends_with("AlreadyExistsFault") =>
        {
            ErrorClass::Conflict
        }
        _ => match status {
            Some(s) if s >= 500 || s == 429 => ErrorClass::Transient,
            Some(404) => ErrorClass::NotFound,
            _ => ErrorClass::Refused,
        },
    }
}

fn display_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// `.aws()?` turns an SDK result into a classified [`AwsError`] that names the operation.
pub trait AwsResultExt<T> {
    fn aws(self) -> Result<T, AwsError>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn aws(self) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation_of::<E>(), e))
    }
}

/// The operation an SDK error type belongs to, from the SDK's own generated type: every
/// operation `X` of every service has its error type `<crate>::operation::x::XError`
/// (`DescribeDBInstancesError` → `DescribeDBInstances`), so no name is typed by hand.
pub fn operation_of<E: 'static>() -> &'static str {
    let full = std::any::type_name::<E>();
    let last = full.rsplit("::").next().unwrap_or(full);
    last.strip_suffix("Error").unwrap_or(last)
}

/// `.absent_ok()` turns a NotFound error into `Ok(None)`.
pub trait AbsentOk<T> {
    fn absent_ok(self) -> Result<Option<T>, AwsError>;
}

impl<T> AbsentOk<T> for Result<T, AwsError> {
    fn absent_ok(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_the_sdks_own_name() {
        use aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressError;
        use aws_sdk_efs::operation::describe_file_systems::DescribeFileSystemsError;
        use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
        assert_eq!(
            operation_of::<DescribeDBInstancesError>(),
            "DescribeDBInstances"
        );
        assert_eq!(
            operation_of::<AuthorizeSecurityGroupIngressError>(),
            "AuthorizeSecurityGroupIngress"
        );
        assert_eq!(
            operation_of::<DescribeFileSystemsError>(),
            "DescribeFileSystems"
        );
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            classify(Some("InvalidGroup.NotFound"), Some(400)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(Some("DBInstanceNotFound"), Some(404)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(Some("RequestLimitExceeded"), Some(503)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some("InvalidPermission.Duplicate"), Some(400)),
            ErrorClass::Conflict
        );
        assert_eq!(
            classify(Some("InvalidParameterValue"), Some(400)),
            ErrorClass::Refused
        );
        assert_eq!(classify(None, Some(500)), ErrorClass::Transient);
        assert_eq!(
            classify(Some("UnauthorizedOperation"), Some(403)),
            ErrorClass::Refused
        );
    }

    #[test]
    fn message_keeps_the_aws_code() {
        let e = AwsError {
            operation: "DescribeSecurityGroups",
            code: Some("InvalidGroup.NotFound".into()),
            message: "The security group 'sg-1' does not exist".into(),
            class: ErrorClass::NotFound,
        };
        assert_eq!(
            e.to_string(),
            "DescribeSecurityGroups failed: InvalidGroup.NotFound: The security group 'sg-1' does not exist"
        );
        assert_eq!(Err::<(), _>(e).absent_ok().unwrap(), None);
    }
}
