//! AWS errors, classified once so that stages decide from the class and never from SDK
//! types, with AWS's own code and message kept for the person reading the failure.

use std::fmt;

/// What kind of failure an AWS call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The resource does not exist (or no longer does).
    NotFound,
    /// The resource exists already, or the call conflicts with work in progress.
    Conflict,
    /// AWS asked us to slow down; the SDK's retries were exhausted.
    Throttled,
    /// A network problem or a 5xx answer; the SDK's retries were exhausted.
    Transient,
    /// The credentials may not do this.
    Denied,
    /// No credentials were found in the standard chain (profile, environment, SSO,
    /// instance or container role, web identity).
    NoCredentials,
    /// AWS (or the endpoint given) could not be reached at all.
    Unreachable,
    /// AWS refused the request as malformed or not allowed.
    Invalid,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::NotFound => "not found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Transient => "transient failure",
            ErrorClass::Denied => "access denied",
            ErrorClass::NoCredentials => "no credentials",
            ErrorClass::Unreachable => "endpoint unreachable",
            ErrorClass::Invalid => "invalid request",
        })
    }
}

/// A failed AWS call: which operation, its class, AWS's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({class}): {code}: {message}")]
pub struct CloudError {
    pub operation: &'static str,
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
}

impl CloudError {
    pub fn new(
        operation: &'static str,
        class: ErrorClass,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CloudError {
            operation,
            class,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is(&self, class: ErrorClass) -> bool {
        self.class == class
    }

    /// The class of an AWS error code, from the codes EC2, Auto Scaling and SSM answer.
    /// `status` is the HTTP status, used when the code is unknown.
    pub fn classify(code: &str, status: Option<u16>) -> ErrorClass {
        match code {
            c if c.ends_with(".NotFound")
                || c.ends_with("NotFound")
                || c.ends_with("NotFoundException")
                || c == "InvocationDoesNotExist"
                || c == "ParameterNotFound"
                || c == "InvalidInstanceId"
                || c == "NoSuchEntity"
                // A deregistered image, for a while after its deregistration.
                || c == "InvalidAMIID.Unavailable" =>
            {
                ErrorClass::NotFound
            }
            "AlreadyExists"
            | "ParameterAlreadyExists"
            | "InstanceRefreshInProgress"
            | "ResourceInUse"
            | "ScalingActivityInProgress"
            | "IncorrectInstanceState"
            | "IdempotentParameterMismatch" => ErrorClass::Conflict,
            c if c.contains("AlreadyExists")
                || c.ends_with(".Duplicate")
                || c.ends_with(".InUse") =>
            {
                ErrorClass::Conflict
            }
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyUpdates"
            | "RequestThrottled"
            | "SlowDown" => ErrorClass::Throttled,
            "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
            | "InternalServerError"
            | "RequestTimeout"
            | "RequestTimeoutException" => ErrorClass::Transient,
            "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "UnrecognizedClientException"
            | "OptInRequired" => ErrorClass::Denied,
            _ => match status {
                Some(s) if s >= 500 => ErrorClass::Transient,
                Some(403) => ErrorClass::Denied,
                Some(404) => ErrorClass::NotFound,
                Some(429) => ErrorClass::Throttled,
                _ => ErrorClass::Invalid,
            },
        }
    }

    /// Whether waiting a little and asking again may get another answer: throttling, a 5xx
    /// or a network failure. A wait counts these as "still pending", up to a cap.
    pub fn is_passing(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Unreachable
        )
    }

    /// The IAM action of the failed call, e.g. `ec2:RunInstances`.
    pub fn iam_action(&self) -> String {
        iam_action(self.operation)
    }

    /// What to do about this failure, for the hint line. Only a failure that a second run
    /// can get past says to run again.
    pub fn hint(&self) -> String {
        match self.class {
            ErrorClass::NotFound => "check the name or id in the pipeline, and the region".into(),
            ErrorClass::Conflict => {
                "another run or person may be changing the same resource: check `red5-rollout status`".into()
            }
            ErrorClass::Throttled => {
                "AWS is throttling this account: run again later, or with fewer pipelines at once".into()
            }
            ErrorClass::Transient => {
                "AWS failed after retries: run again; every stage resumes where it was".into()
            }
            ErrorClass::Denied => format!(
                "the credentials may not call {}: add it to the role's policy (docs/iam/apply.json lists what apply needs, docs/iam/plan.json what plan and status need)",
                self.iam_action()
            ),
            ErrorClass::NoCredentials => {
                "no AWS credentials were found: set AWS_PROFILE (after `aws sso login` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance role or GitHub's OIDC role (aws-actions/configure-aws-credentials) provides them".into()
            }
            ErrorClass::Unreachable => {
                "the AWS endpoint could not be reached: check the network, a proxy (HTTPS_PROXY), the region, and --endpoint-url / AWS_ENDPOINT_URL when one is set".into()
            }
            ErrorClass::Invalid => {
                "AWS refused the request: check the pipeline's values against the message".into()
            }
        }
    }
}

/// The IAM action an operation needs: its service prefix and the operation's name.
pub fn iam_action(operation: &str) -> String {
    let service = match operation {
        "DescribeAutoScalingGroups"
        | "DescribeLaunchConfigurations"
        | "DescribeInstanceRefreshes"
        | "CreateLaunchConfiguration"
        | "DeleteLaunchConfiguration"
        | "UpdateAutoScalingGroup"
        | "CreateOrUpdateTags"
        | "StartInstanceRefresh"
        | "CancelInstanceRefresh"
        | "RollbackInstanceRefresh" => "autoscaling",
        "DescribeInstanceInformation"
        | "SendCommand"
        | "GetCommandInvocation"
        | "ListCommands"
        | "ListCommandInvocations"
        | "PutParameter"
        | "GetParameter"
        | "GetParameters"
        | "DeleteParameter" => "ssm",
        "DescribeTargetGroups" | "DescribeLoadBalancers" => "elasticloadbalancing",
        "GetInstanceProfile"
        | "ListAttachedRolePolicies"
        | "ListRolePolicies"
        | "GetRolePolicy"
        | "GetPolicy"
        | "GetPolicyVersion" => "iam",
        _ => "ec2",
    };
    format!("{service}:{operation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let table = [
            ("InvalidAMIID.NotFound", None, ErrorClass::NotFound),
            ("InvalidInstanceID.NotFound", None, ErrorClass::NotFound),
            ("ParameterNotFound", Some(400), ErrorClass::NotFound),
            ("NoSuchEntity", Some(404), ErrorClass::NotFound),
            ("TargetGroupNotFound", Some(400), ErrorClass::NotFound),
            ("InvocationDoesNotExist", Some(400), ErrorClass::NotFound),
            (
                "ActiveInstanceRefreshNotFound",
                Some(400),
                ErrorClass::NotFound,
            ),
            ("InvalidAMIID.Unavailable", Some(400), ErrorClass::NotFound),
            ("InvalidSnapshot.NotFound", Some(400), ErrorClass::NotFound),
            ("AlreadyExists", Some(400), ErrorClass::Conflict),
            ("ResourceInUse", Some(400), ErrorClass::Conflict),
            ("InvalidSnapshot.InUse", Some(400), ErrorClass::Conflict),
            ("ParameterAlreadyExists", Some(400), ErrorClass::Conflict),
            ("InstanceRefreshInProgress", Some(400), ErrorClass::Conflict),
            (
                "InvalidLaunchTemplateName.AlreadyExistsException",
                Some(400),
                ErrorClass::Conflict,
            ),
            ("Throttling", Some(400), ErrorClass::Throttled),
            ("RequestLimitExceeded", Some(503), ErrorClass::Throttled),
            ("ThrottlingException", Some(400), ErrorClass::Throttled),
            ("InternalError", Some(500), ErrorClass::Transient),
            ("Whatever", Some(502), ErrorClass::Transient),
            ("UnauthorizedOperation", Some(403), ErrorClass::Denied),
            ("ValidationError", Some(400), ErrorClass::Invalid),
            ("UnsupportedOperation", Some(400), ErrorClass::Invalid),
        ];
        for (code, status, class) in table {
            assert_eq!(CloudError::classify(code, status), class, "{code}");
        }
    }

    #[test]
    fn access_denied_names_the_action_and_only_passing_failures_say_run_again() {
        let denied = CloudError::new(
            "StartInstanceRefresh",
            ErrorClass::Denied,
            "AccessDenied",
            "not authorized",
        );
        assert!(
            denied
                .hint()
                .starts_with("the credentials may not call autoscaling:StartInstanceRefresh:"),
            "{}",
            denied.hint()
        );
        assert_eq!(iam_action("SendCommand"), "ssm:SendCommand");
        assert_eq!(iam_action("RunInstances"), "ec2:RunInstances");
        for class in [
            ErrorClass::NotFound,
            ErrorClass::Conflict,
            ErrorClass::Denied,
            ErrorClass::NoCredentials,
            ErrorClass::Unreachable,
            ErrorClass::Invalid,
        ] {
            let error = CloudError::new("DescribeImages", class, "X", "y");
            assert!(
                !error.hint().contains("run again"),
                "{class}: {}",
                error.hint()
            );
        }
        for class in [ErrorClass::Throttled, ErrorClass::Transient] {
            let error = CloudError::new("DescribeImages", class, "X", "y");
            assert!(
                error.hint().contains("run again"),
                "{class}: {}",
                error.hint()
            );
            assert!(error.is_passing());
        }
    }
}
